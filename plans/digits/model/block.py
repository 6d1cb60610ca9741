"""M1 ConvBlock."""

from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Module):
    """M1 ConvBlock: 3×3 convolution (padding 1, no bias) → BatchNorm2d → ReLU.

    (B, C_in, H, W) → (B, C_out, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(x)))
