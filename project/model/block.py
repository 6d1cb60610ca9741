"""M6 TransformerBlock."""

from __future__ import annotations

import torch
from torch import nn

from ..model.attention import CausalSelfAttention, KVCache
from ..model.feedforward import SwiGLU
from ..model.norm import RMSNorm
from ..model.rope import RotaryEmbedding


class TransformerBlock(nn.Module):
    """M6 TransformerBlock, pre-norm: x ← x + Attn(RMSNorm(x)); x ← x + FFN(RMSNorm(x))."""

    def __init__(
        self, d_model: int, n_head: int, dropout: float, eps: float, rope: RotaryEmbedding
    ) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(d_model, eps)
        self.attn = CausalSelfAttention(d_model, n_head, dropout, rope)
        self.ffn_norm = RMSNorm(d_model, eps)
        self.ffn = SwiGLU(d_model, dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cache)
        return x + self.ffn(self.ffn_norm(x))
