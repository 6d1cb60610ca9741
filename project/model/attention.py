"""M4 CausalSelfAttention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.rope import RotaryEmbedding


class CausalSelfAttention(nn.Module):
    """M4 CausalSelfAttention: softmax(q kᵀ / sqrt(d_h) + M) v over H heads.

    One bias-free map d → 3d gives q, k, v; RoPE (M2) rotates q and k; the causal mask M
    is −∞ above the diagonal; dropout p on the attention weights (training only) and on
    the output of the bias-free projection d → d. PyTorch's scaled-dot-product attention
    computes exactly this formula with fused kernels.
    """

    def __init__(self, d_model: int, n_head: int, dropout: float, rope: RotaryEmbedding) -> None:
        super().__init__()
        self.n_head = n_head
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)
        self.proj_dropout = nn.Dropout(dropout)
        self.rope = rope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=-1)
        # (B, T, d) → (B, H, T, d_h)
        q, k, v = (t.view(batch, length, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
        q, k = self.rope(q), self.rope(k)
        attended = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        merged = attended.transpose(1, 2).reshape(batch, length, width)
        return self.proj_dropout(self.proj(merged))
