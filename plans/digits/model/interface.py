"""The model interface that the stages rely on, and the one factory (M2 | M3)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from .cnn import DigitCNN
from .config import ModelConfig
from .linear import LinearClassifier


@runtime_checkable
class DigitModel(Protocol):
    """What the stages use of a model besides nn.Module's own methods (to, train, eval,
    parameters, modules, state_dict, load_state_dict): its config, the forward pass and
    its size.
    """

    config: ModelConfig

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 1, 8, 8), normalised (D3) → logits (B, 10)."""
        ...

    def num_parameters(self) -> int:
        """Every parameter, counted once."""
        ...


def build_model(config: ModelConfig) -> nn.Module:
    """The model that `model.arch` chooses: M2 DigitCNN (`cnn`) or M3 LinearClassifier
    (`linear`), initialised (M4) from PyTorch's global generator.
    """
    architectures = {"cnn": DigitCNN, "linear": LinearClassifier}
    return architectures[config.arch](config)
