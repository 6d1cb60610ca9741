"""M2 RotaryEmbedding (RoPE): position enters attention only through rotations of q and k."""

from __future__ import annotations

import torch
from torch import nn


class RotaryEmbedding(nn.Module):
    """M2 RotaryEmbedding: rotate each head's q and k by angles θ_{t,i} = t · base^{−2i/d_h}.

    Dimension i of the first half of a head is paired with dimension i of the second
    half. The cos/sin tables are computed once for the longest context and sliced, and
    are not saved in checkpoints (they follow from the config). No learned positions.
    """

    def __init__(self, head_dim: int, max_len: int, base: float) -> None:
        super().__init__()
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
        self.register_buffer("cos", angles.cos(), persistent=False)  # (max_len, head_dim/2)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Rotate x of shape (B, H, T, d_h), whose first position is `start`; returns the
        same shape and dtype.
        """
        end = start + x.shape[-2]
        cos, sin = self.cos[start:end], self.sin[start:end]
        first, second = x.float().chunk(2, dim=-1)
        rotated = torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)
        return rotated.to(x.dtype)
