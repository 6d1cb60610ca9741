"""M3 LinearClassifier."""

from __future__ import annotations

import torch
from torch import nn

from ..data.parse import NUM_CLASSES, PIXELS
from .config import ModelConfig
from .init import init_weights


class LinearClassifier(nn.Module):
    """M3 LinearClassifier: multinomial logistic regression, one linear map from the 64
    normalised pixels to the 10 logits (650 parameters).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.head = nn.Linear(PIXELS, NUM_CLASSES)
        init_weights(self)  # M4

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 1, 8, 8) → logits (B, 10)."""
        return self.head(images.flatten(1))  # (B, 64) → (B, 10)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
