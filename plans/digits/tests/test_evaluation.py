"""E1-E5: metrics by hand, the baselines on the real data, the hardest images, pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from digits.data.dataset import PreparedDigits
from digits.model.config import ModelConfig
from digits.model.interface import build_model
from digits.testing.baselines import majority_class
from digits.testing.evaluator import BASELINES, baseline_predictions, evaluate, hardest
from digits.testing.metrics import accuracy, confusion_matrix, macro_f1, per_class_accuracy
from digits.testing.pictures import confusion_picture, hardest_picture
from digits.testing.scoring import loss_and_accuracy
from digits.utils.config import EvalConfig

PNG = b"\x89PNG\r\n\x1a\n"


def test_metrics_of_a_small_example_worked_by_hand() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2])
    confusion = confusion_matrix(labels, predicted)
    assert confusion.shape == (10, 10) and confusion.sum() == 6
    assert confusion[:3, :3].tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert accuracy(confusion) == pytest.approx(4 / 6)
    per_class = per_class_accuracy(confusion)
    assert per_class[:3].tolist() == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert np.isnan(per_class[3:]).all()
    # F1: digit 0: 2·2/(2·2+0+1) = 0.8; 1: 2/(2+1+1) = 0.5; 2: 2/(2+1+0) = 2/3; others 0
    assert macro_f1(confusion) == pytest.approx((0.8 + 0.5 + 2 / 3) / 10)


def test_loss_and_accuracy_of_logits() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    loss, hits = loss_and_accuracy(logits, torch.tensor([0, 1]))
    assert loss == pytest.approx((np.log(1 + np.exp(-2)) + np.log(2)) / 2)
    assert hits == 0.5  # a tie goes to the first digit


def test_the_baselines_match_the_plans_reference_points(prepared: PreparedDigits) -> None:
    predictions = baseline_predictions(prepared, prepared.test)
    labels = prepared.test.labels.numpy()
    scores = {name: (predictions[name] == labels).mean() for name in BASELINES}
    assert scores["majority_class"] == pytest.approx(0.098, abs=0.001)
    assert scores["nearest_centroid"] == pytest.approx(0.868, abs=0.001)
    assert majority_class(prepared.train.labels.numpy()) == 0  # 0 and 3 tie at 82


def test_hardest_are_the_lowest_probabilities_of_the_true_digit() -> None:
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.2, 0.8]])
    assert hardest(probabilities, np.array([0, 0, 1, 0]), 3).tolist() == [1, 3, 2]


def test_evaluation_of_a_model_and_its_pictures(prepared: PreparedDigits) -> None:
    torch.manual_seed(0)
    metrics = evaluate(build_model(ModelConfig()), prepared, EvalConfig())
    confusion = np.array(metrics["confusion_matrix"])
    assert (
        confusion.sum() == 899
        and confusion.sum(axis=1).tolist() == (prepared.manifest["splits"]["test"]["class_counts"])
    )
    assert metrics["test_accuracy"] == pytest.approx(np.trace(confusion) / 899)
    names = [figure["name"] for figure in metrics["figures"]]
    assert names == [
        "test_accuracy",
        "test_macro_f1",
        "test_loss_nats",
        "val_accuracy",
        "val_macro_f1",
        "val_loss_nats",
    ]
    assert all(metrics[f["name"]] == f["value"] for f in metrics["figures"])
    assert metrics["baselines"]["nearest_centroid"]["test_accuracy"] == pytest.approx(
        0.868, abs=0.001
    )
    worst = metrics["hardest"]
    assert len(worst) == 16 and worst == sorted(worst, key=lambda r: r["p_true"])
    assert worst[0]["file_line"] == 898 + worst[0]["test_index"] + 1
    assert confusion_picture(confusion, "test").startswith(PNG)
    counts = prepared.test.counts[[r["test_index"] for r in worst]]
    assert hardest_picture(counts, worst).startswith(PNG)
