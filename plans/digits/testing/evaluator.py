"""E1-E5 on the best checkpoint: metrics.json's figures and records, beside the baselines."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from harness.contract import Figure
from torch import nn

from ..data.dataset import PreparedDigits, Split
from ..utils.config import EvalConfig
from .baselines import majority_class, nearest_centroid
from .metrics import accuracy, confusion_matrix, macro_f1, per_class_accuracy
from .scoring import loss_and_accuracy, split_logits

# E4's reference models, by key, as the report names them.
BASELINES = {
    "majority_class": "Majority class (train split)",
    "nearest_centroid": "Nearest centroid (train split)",
}
SCORED = ("val", "test")


def hardest(probabilities: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """E5 Hardest examples: the `count` images with the lowest predicted probability of
    their true digit, lowest first (file order on a tie); probabilities (N, 10).
    """
    p_true = probabilities[np.arange(len(labels)), labels]
    return np.argsort(p_true, kind="stable")[:count]


def baseline_predictions(data: PreparedDigits, split: Split) -> dict[str, np.ndarray]:
    """E4: each reference baseline's predictions (N,) on `split`, fitted on training."""
    train_images = data.train.images.cpu().numpy()
    train_labels = data.train.labels.cpu().numpy()
    return {
        "majority_class": np.full(len(split), majority_class(train_labels)),
        "nearest_centroid": nearest_centroid(
            train_images, train_labels, split.images.cpu().numpy()
        ),
    }


def figure(
    name: str,
    label: str,
    value: float,
    unit: str = "",
    baselines: dict[str, float] | None = None,
    summary: bool = False,
) -> dict[str, Any]:
    """One entry of metrics.json's `figures` (harness/contract.py: Figure)."""
    return asdict(Figure(name, label, value, unit, ".4f", summary, baselines or {}))


def split_figures(
    name: str, label: str, score: dict[str, Any], reference: dict[str, dict[str, float]]
) -> list[dict[str, Any]]:
    """E1/E3's figures of one split: accuracy (in the summary), macro-F1 and loss."""
    confusion = score["confusion"]
    return [
        figure(
            f"{name}_accuracy",
            f"{label} accuracy",
            accuracy(confusion),
            baselines={b: reference[b][f"{name}_accuracy"] for b in BASELINES},
            summary=True,
        ),
        figure(
            f"{name}_macro_f1",
            f"{label} macro-F1",
            macro_f1(confusion),
            baselines={b: reference[b][f"{name}_macro_f1"] for b in BASELINES},
        ),
        figure(f"{name}_loss_nats", f"{label} loss", score["loss"], "nats/image"),
    ]


def evaluate(model: nn.Module, data: PreparedDigits, config: EvalConfig) -> dict[str, Any]:
    """E1-E5: loss and accuracy on the validation and test splits (E1), the test split's
    per-class accuracy and confusion matrix (E2) and macro-F1 (E3), the same figures of
    the baselines (E4) and the hardest test images (E5).
    """
    scores: dict[str, dict[str, Any]] = {}
    reference: dict[str, dict[str, float]] = {name: {} for name in BASELINES}
    for name in SCORED:
        split = getattr(data, name)
        logits = split_logits(model, split.images)  # (N, 10)
        loss, _ = loss_and_accuracy(logits, split.labels)
        labels = split.labels.cpu().numpy()
        confusion = confusion_matrix(labels, logits.argmax(dim=1).cpu().numpy())
        scores[name] = {
            "loss": loss,
            "confusion": confusion,
            "probabilities": torch.softmax(logits, dim=1).cpu().numpy(),
        }
        for baseline, predicted in baseline_predictions(data, split).items():
            chosen = confusion_matrix(labels, predicted)
            reference[baseline][f"{name}_accuracy"] = accuracy(chosen)
            reference[baseline][f"{name}_macro_f1"] = macro_f1(chosen)
    test = scores["test"]
    labels = data.test.labels.cpu().numpy()
    worst = hardest(test["probabilities"], labels, config.hardest)
    figures = [
        entry
        for name, label in (("test", "test"), ("val", "validation"))
        for entry in split_figures(name, label, scores[name], reference)
    ]
    values = {entry["name"]: entry["value"] for entry in figures}
    return {
        "plan_ids": ["E1", "E2", "E3", "E4", "E5"],
        **values,
        "test_images": len(labels),
        "per_class_accuracy": per_class_accuracy(test["confusion"]).tolist(),
        "confusion_matrix": test["confusion"].tolist(),  # rows: true digit, columns: predicted
        "baselines": reference,
        "model_name": type(model).__name__,
        "references": BASELINES,
        "note": f"Scored images: test {len(labels):,}, validation {len(data.val.labels):,}.",
        "beats_baselines": {
            b: values["test_accuracy"] > reference[b]["test_accuracy"] for b in BASELINES
        },
        "hardest": [
            {
                "test_index": int(i),
                "file_line": int(data.manifest["splits"]["test"]["start"] + i + 1),
                "true": int(labels[i]),
                "predicted": int(test["probabilities"][i].argmax()),
                "p_true": float(test["probabilities"][i, labels[i]]),
            }
            for i in worst
        ],
        "figures": figures,
    }
