"""E2 per-class results and E3 macro-F1, from the confusion matrix."""

from __future__ import annotations

import numpy as np

from ..data.parse import NUM_CLASSES


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """E2: counts (10, 10), rows the true digit, columns the predicted one."""
    pairs = labels.astype(np.int64) * NUM_CLASSES + predictions.astype(np.int64)
    return np.bincount(pairs, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


def accuracy(confusion: np.ndarray) -> float:
    """E1 top-1 accuracy: the share of the matrix on its diagonal."""
    return float(np.trace(confusion) / confusion.sum())


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """E2: each digit's accuracy (its recall), (10,); NaN for a digit the split lacks."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(confusion) / confusion.sum(axis=1)


def macro_f1(confusion: np.ndarray) -> float:
    """E3 Macro-F1: the mean over the ten digits of F1 = 2·TP / (2·TP + FP + FN), a digit
    never predicted nor present counting 0.
    """
    hits = np.diag(confusion)
    wrong = confusion.sum(axis=0) + confusion.sum(axis=1) - 2 * hits  # FP + FN
    scores = np.divide(2 * hits, 2 * hits + wrong, out=np.zeros(NUM_CLASSES), where=hits > 0)
    return float(scores.mean())
