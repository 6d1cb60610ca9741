"""T1 Loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """T1 Loss: the mean cross-entropy of logits (B, 10) against labels (B,) over the batch,
    in nats.
    """
    return F.cross_entropy(logits, labels)
