"""D5 Evaluation and E1: a split's logits, loss and accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from harness.device import inference_mode
from torch import nn


def split_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """D5 Evaluation: every image of a split exactly once, in file order, without
    augmentation, in one batch (899 images at most): images (N, 1, 8, 8) → fp32 logits
    (N, 10), with dropout off and BatchNorm's running statistics.
    """
    with inference_mode(model):
        return model(images).float()


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """E1: the mean cross-entropy in nats and the top-1 accuracy of logits (N, 10)
    against labels (N,).
    """
    loss = F.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(dim=1) == labels).double().mean().item()
    return loss, accuracy
