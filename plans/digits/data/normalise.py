"""D3 Normalisation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .parse import MAX_COUNT


@dataclass(frozen=True)
class Normalisation:
    """D3 Normalisation: x / 16, minus the training split's mean pixel value, divided by
    its standard deviation (two numbers, recorded in the manifest).
    """

    mean: float
    std: float

    @classmethod
    def fit(cls, counts: np.ndarray) -> Normalisation:
        """D3: the mean and standard deviation of x / 16 over every pixel of `counts`, the
        training split's images (N, 8, 8).
        """
        scaled = counts.astype(np.float64) / MAX_COUNT
        return cls(mean=float(scaled.mean()), std=float(scaled.std()))

    def apply(self, counts: np.ndarray) -> np.ndarray:
        """D3: pixel counts (any shape) → normalised float32 values, of the same shape."""
        return ((counts.astype(np.float64) / MAX_COUNT - self.mean) / self.std).astype(np.float32)

    @property
    def blank(self) -> float:
        """The normalised value of a blank pixel, (0 − mean) / std: D4's shifted-in border."""
        return -self.mean / self.std
