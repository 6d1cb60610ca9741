"""The prepared digits as the later stages read them: the three splits (D2), normalised
(D3), in file order (D5).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness.inputs import require, verify
from harness.io import read_json

from .normalise import Normalisation
from .parse import PIXELS, SIDE
from .prepare import SPLITS


@dataclass(frozen=True)
class Split:
    """One split's digits in file order (D5)."""

    images: torch.Tensor  # (N, 1, 8, 8) float32, normalised (D3)
    labels: torch.Tensor  # (N,) int64
    counts: np.ndarray  # (N, 8, 8) uint8: the pixel counts 0–16 as in the file (pictures)

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device) -> Split:
        return Split(self.images.to(device), self.labels.to(device), self.counts)


@dataclass(frozen=True)
class PreparedDigits:
    """The `prepare` stage's output: the splits, D3's statistics and the manifest."""

    train: Split
    val: Split
    test: Split
    normalisation: Normalisation
    manifest: dict[str, Any]

    @classmethod
    def load(cls, rows_path: Path, manifest_path: Path) -> PreparedDigits:
        """The rows that the manifest records (size and SHA-256 checked), split at its
        bounds and normalised with its statistics.
        """
        require([manifest_path], "prepare")
        manifest = read_json(manifest_path)
        verify(rows_path, manifest["files"]["rows"], "prepare", manifest_path)
        rows = np.load(rows_path, allow_pickle=False)  # (N, 65) uint8
        normalisation = Normalisation(**manifest["normalisation"])
        splits = {}
        for name in SPLITS:
            bounds = manifest["splits"][name]
            part = rows[bounds["start"] : bounds["stop"]]
            counts = part[:, :PIXELS].reshape(-1, SIDE, SIDE)
            splits[name] = Split(
                images=torch.from_numpy(normalisation.apply(counts)).unsqueeze(1),
                labels=torch.from_numpy(part[:, PIXELS].astype(np.int64)),
                counts=counts,
            )
        return cls(**splits, normalisation=normalisation, manifest=manifest)

    def to(self, device: torch.device) -> PreparedDigits:
        """The splits' tensors on `device`: the whole data set is 0.5 MB."""
        moved = {name: getattr(self, name).to(device) for name in SPLITS}
        return PreparedDigits(**moved, normalisation=self.normalisation, manifest=self.manifest)
