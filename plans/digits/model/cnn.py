"""M2 DigitCNN."""

from __future__ import annotations

import torch
from torch import nn

from ..data.parse import NUM_CLASSES, SIDE
from .block import ConvBlock
from .config import ModelConfig
from .init import init_weights


class DigitCNN(nn.Module):
    """M2 DigitCNN: ConvBlock(1→32) → ConvBlock(32→32) → 2×2 max-pool (8×8 → 4×4) →
    ConvBlock(32→64) → ConvBlock(64→64) → 2×2 max-pool (→ 2×2) → flatten (256) →
    dropout p = 0.3 → linear 256 → 10 (the logits). 67,754 parameters at the plan's sizes.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        wide, deep = config.channels, config.deep_channels
        self.features = nn.Sequential(
            ConvBlock(1, wide),
            ConvBlock(wide, wide),
            nn.MaxPool2d(2),
            ConvBlock(wide, deep),
            ConvBlock(deep, deep),
            nn.MaxPool2d(2),
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(deep * (SIDE // 4) ** 2, NUM_CLASSES)
        init_weights(self)  # M4

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 1, 8, 8) → logits (B, 10)."""
        x = self.features(images)  # (B, 64, 2, 2)
        return self.head(self.dropout(x.flatten(1)))  # (B, 256) → (B, 10)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
