"""What every architecture may share: parameter counts and E5 sampling.

A model that subclasses CharModel and sets `vocab_size`, `block_size` and `blocks` needs
only its forward pass and its FLOPs to keep the interface (model/interface.py).
"""

from __future__ import annotations

import torch
from harness.contract import parameters_by_module
from torch import nn


def sample_next(
    logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator
) -> torch.Tensor:
    """E5: the next id (B, 1) from the last position's logits (B, V), scaled by
    1/temperature and restricted to the top k.
    """
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


class CharModel(nn.Module):
    """The parts of the interface that do not depend on the architecture."""

    vocab_size: int
    block_size: int

    def num_parameters(self) -> int:
        """Parameters counted once (the tied head adds none)."""
        return sum(p.numel() for p in self.parameters())

    def parameters_by_module(self) -> dict[str, int]:
        """Parameters of each component, keyed by the plan file that defines it
        (harness/contract.py).
        """
        return parameters_by_module(self)

    @torch.inference_mode()
    def generate(
        self,
        prompt_ids: list[int],
        n: int,
        temperature: float,
        top_k: int | None,
        seed: int,
    ) -> list[int]:
        """E5: sample `n` ids after the prompt, each from the last T ids (the whole
        context recomputed for every new id). Sampling uses its own generator seeded with
        `seed`, so samples are reproducible and do not disturb the global random state.
        """
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed)
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
        for _ in range(n):
            logits = self(ids[:, -self.block_size :])
            next_id = sample_next(logits[:, -1, :], temperature, top_k, generator)
            ids = torch.cat((ids, next_id), dim=1)
        self.train(was_training)
        return ids[0, len(prompt_ids) :].tolist()
