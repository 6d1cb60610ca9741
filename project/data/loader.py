"""D4 training windows and D5 evaluation windows, cut directly from device-resident ids.

The encoded text is small (2 MB as int64 for Tiny Shakespeare), so it lives on the
training device and every batch is a gather there: no DataLoader, no host round trip.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..utils.config import ConfigError


def epoch_generator(seed: int, epoch: int) -> np.random.Generator:
    """D4: the generator of epoch `e`, a pure function of (seed, e)."""
    return np.random.default_rng([seed, epoch])


class TrainBatches:
    """D4 Training windows: per epoch, a random offset o ∈ [0, T), non-overlapping windows
    of T+1 ids from o, shuffled, B a batch, the last incomplete batch dropped.

    Every epoch has the same number of windows (the count that fits for the largest
    offset), so the number of steps, and with it the T3 schedule, is known up front.
    """

    def __init__(
        self,
        ids: torch.Tensor,
        block_size: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.ids = ids
        self.block_size = block_size
        self.batch_size = batch_size
        self.seed = seed
        # Under DDP each process takes its share of every batch: rows [rank·B/N, (rank+1)·B/N).
        self.share = slice(rank * batch_size // world_size, (rank + 1) * batch_size // world_size)
        self.windows_per_epoch = (len(ids) - (block_size - 1)) // (block_size + 1)
        self.steps_per_epoch = self.windows_per_epoch // batch_size
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"the training split ({len(ids)} ids) is too short for one batch of "
                f"{batch_size} windows of {block_size + 1}; lower train.batch_size "
                "or model.block_size"
            )
        # Offsets 0..T of one window, reused by every gather.
        self.window = torch.arange(block_size + 1, device=ids.device)

    @property
    def batch_shape(self) -> tuple[int, int]:
        """(B/N, T): the shape of this process's inputs and targets."""
        return (self.share.stop - self.share.start, self.block_size)

    def window_starts(self, epoch: int) -> torch.Tensor:
        """D4: the shuffled start positions of epoch `epoch`'s windows (batches in order)."""
        rng = epoch_generator(self.seed, epoch)
        offset = int(rng.integers(0, self.block_size))
        order = rng.permutation(self.windows_per_epoch)
        used = order[: self.steps_per_epoch * self.batch_size]
        starts = offset + used * (self.block_size + 1)
        return torch.from_numpy(starts).to(self.ids.device)

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (input, target) batches of shape (B/N, T); `skip` resumes mid-epoch."""
        starts = self.window_starts(epoch)
        for step in range(skip, self.steps_per_epoch):
            batch_starts = starts[step * self.batch_size : (step + 1) * self.batch_size]
            batch_starts = batch_starts[self.share]
            windows = self.ids[batch_starts[:, None] + self.window]
            yield windows[:, :-1], windows[:, 1:]

    def endless(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of epochs 0, 1, 2, ... in order (benchmarks, tests)."""
        for epoch in itertools.count():
            yield from self.epoch(epoch)


@dataclass(frozen=True)
class EvalWindow:
    """One D5 window: inputs ids[start : start+T]; its last `scored` targets count."""

    start: int
    scored: int


def eval_windows(n_ids: int, block_size: int, stride: int) -> list[EvalWindow]:
    """D5 Evaluation windows: every id after the first is scored exactly once.

    Windows of length T move by S; the first scores all T positions, each later one only
    its last S, so every scored id has at least T−S ids of context. The final window is
    pulled back to end at the last id and scores only what is still unscored.
    """
    if n_ids < 2:
        raise ValueError("evaluation needs at least two ids")
    if stride < 1:
        raise ValueError(f"the evaluation stride must be >= 1, got {stride}")
    length = min(block_size, n_ids - 1)
    windows = [EvalWindow(start=0, scored=length)]
    scored_upto = length  # ids 1..scored_upto have been scored
    while scored_upto < n_ids - 1:
        end = min(scored_upto + stride, n_ids - 1)
        windows.append(EvalWindow(start=end - length, scored=end - scored_upto))
        scored_upto = end
    return windows


def eval_batches(
    ids: torch.Tensor, windows: list[EvalWindow], block_size: int, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """D5: yield (input, target, scored-mask) batches; the mask marks the scored targets."""
    length = min(block_size, len(ids) - 1)
    offsets = torch.arange(length + 1, device=ids.device)
    positions = torch.arange(length, device=ids.device)
    for first in range(0, len(windows), batch_size):
        chunk = windows[first : first + batch_size]
        starts = torch.tensor([w.start for w in chunk], device=ids.device)
        scored = torch.tensor([w.scored for w in chunk], device=ids.device)
        batch = ids[starts[:, None] + offsets]
        mask = positions[None, :] >= (length - scored)[:, None]
        yield batch[:, :-1], batch[:, 1:], mask
