"""E4 Reference baselines: the training split's majority class and the nearest centroid."""

from __future__ import annotations

import numpy as np

from ..data.parse import NUM_CLASSES


def majority_class(train_labels: np.ndarray) -> int:
    """E4: the training split's most frequent digit (the lowest, on a tie)."""
    return int(np.bincount(train_labels, minlength=NUM_CLASSES).argmax())


def nearest_centroid(
    train_images: np.ndarray, train_labels: np.ndarray, images: np.ndarray
) -> np.ndarray:
    """E4 nearest centroid: each digit's mean normalised image on the training split; each
    of `images` (M, 8, 8) gets the digit whose mean is closest (Euclidean), (M,).
    """
    flat = train_images.reshape(len(train_images), -1).astype(np.float64)  # (N, 64)
    centroids = np.stack([flat[train_labels == k].mean(axis=0) for k in range(NUM_CLASSES)])
    queries = images.reshape(len(images), -1).astype(np.float64)  # (M, 64)
    distances = ((queries[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)  # (M, 10)
    return distances.argmin(axis=1)
