"""T1 Loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def next_char_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """T1 Loss: mean next-character cross-entropy over every position of the batch, in nats,
    L = −(1/(B·T)) Σ_{b,t} log softmax(z_{b,t})[y_{b,t}]. Computed in fp32 under bf16.
    """
    vocab = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, vocab).float(), targets.reshape(-1))
