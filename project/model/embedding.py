"""M1 TokenEmbedding: the character embedding table, shared with the output head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TokenEmbedding(nn.Module):
    """M1 TokenEmbedding: a table E ∈ R^{V×d}, initialised N(0, std²).

    Its weight is tied to the output head (M8), so `logits` reuses it.
    """

    def __init__(self, vocab_size: int, d_model: int, init_std: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, d_model))
        nn.init.normal_(self.weight, mean=0.0, std=init_std)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The tied output head: z = h Eᵀ."""
        return F.linear(hidden, self.weight)
