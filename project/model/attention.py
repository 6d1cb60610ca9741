"""M4 CausalSelfAttention."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..model.rope import RotaryEmbedding


@dataclass
class KVCache:
    """One layer's keys (RoPE applied) and values of the ids seen so far, for sampling:
    each new id then costs one position, not the whole context.
    """

    keys: torch.Tensor | None = None  # (B, H, t, d_h)
    values: torch.Tensor | None = None  # (B, H, t, d_h)

    @property
    def length(self) -> int:
        return 0 if self.keys is None else self.keys.shape[-2]

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new positions; returns every position's keys and values."""
        if self.keys is not None and self.values is not None:
            k, v = torch.cat((self.keys, k), dim=-2), torch.cat((self.values, v), dim=-2)
        self.keys, self.values = k, v
        return k, v


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

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """x (B, T, d) → (B, T, d). With a cache, x holds the positions after the cached
        ones: the whole prompt into an empty cache, then one id at a time.
        """
        batch, length, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=-1)
        # (B, T, d) → (B, H, T, d_h)
        q, k, v = (t.view(batch, length, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
        start = 0 if cache is None else cache.length
        q, k = self.rope(q, start), self.rope(k, start)
        if cache is not None:
            k, v = cache.extend(k, v)
        # One new position may see every cached one: the mask only matters for several.
        attended = F.scaled_dot_product_attention(
            q, k, v, is_causal=length > 1, dropout_p=self.dropout if self.training else 0.0
        )
        merged = attended.transpose(1, 2).reshape(batch, length, width)
        return self.proj_dropout(self.proj(merged))
