"""D4 Training batches, cut from the device-resident training split."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .parse import SIDE


class TrainBatches:
    """D4 Training batches: each epoch the training images are shuffled by a generator
    seeded by (seed, epoch) and cut into batches of B (the last, smaller batch kept). With
    `augment`, each image is shifted by (dy, dx) ∈ {−1, 0, 1}², drawn from the same
    generator; the vacated border takes `blank`, the normalised value of a blank pixel.
    Order and shifts are a pure function of (seed, epoch).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        seed: int,
        augment: bool,
        blank: float,
    ) -> None:
        self.labels = labels  # (N,)
        self.batch_size = batch_size
        self.seed = seed
        self.augment = augment
        # (N, 1, 10, 10): every image inside a one-pixel border of blanks, which a shift
        # moves in; an 8×8 crop at offset (1 − dy, 1 − dx) is the image shifted by (dy, dx).
        self.padded = F.pad(images, (1, 1, 1, 1), value=blank)
        self.steps_per_epoch = math.ceil(len(labels) / batch_size)
        self.window = torch.arange(SIDE, device=images.device)  # 0..7

    def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """D4: epoch `epoch`'s order (N,) and shifts (N, 2) of (dy, dx), zero without
        augmentation: the order is drawn first, so it does not depend on `augment`.
        """
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.labels))
        if not self.augment:
            return order, np.zeros((len(order), 2), dtype=np.int64)
        return order, rng.integers(-1, 2, size=(len(order), 2))

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield epoch `epoch`'s (images (b, 1, 8, 8), labels (b,)) batches, b ≤ B."""
        order, shifts = self.plan(epoch)
        device = self.labels.device
        order_t = torch.from_numpy(order).to(device)
        tops = torch.from_numpy(1 - shifts).to(device)  # (N, 2): the crop's top-left corner
        for first in range(0, len(order), self.batch_size):
            index = order_t[first : first + self.batch_size]  # (b,)
            corner = tops[first : first + self.batch_size]  # (b, 2)
            rows = (corner[:, 0:1] + self.window)[:, :, None]  # (b, 8, 1)
            cols = (corner[:, 1:2] + self.window)[:, None, :]  # (b, 1, 8)
            crops = self.padded[index[:, None, None], 0, rows, cols]  # (b, 8, 8)
            yield crops.unsqueeze(1), self.labels[index]
