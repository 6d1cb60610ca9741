"""M5 SwiGLU feed-forward."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def swiglu_hidden_width(d_model: int) -> int:
    """M5: h = 256 · ceil((8d/3) / 256), i.e. 8d/3 rounded up to a multiple of 256."""
    return 256 * math.ceil(8 * d_model / 3 / 256)


class SwiGLU(nn.Module):
    """M5 SwiGLU feed-forward: W₂ (silu(W₁ x) ⊙ W₃ x), bias-free, dropout p on the output."""

    def __init__(self, d_model: int, dropout: float) -> None:
        super().__init__()
        hidden = swiglu_hidden_width(d_model)
        self.w1 = nn.Linear(d_model, hidden, bias=False)
        self.w3 = nn.Linear(d_model, hidden, bias=False)
        self.w2 = nn.Linear(hidden, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))
