"""The `evaluate` stage (E1-E6): score the best checkpoint on the test and validation
splits beside the baselines, draw the confusion matrix and the hardest test images, and
check the quick validation's expectations.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from harness.io import write_bytes, write_json
from harness.stage import Files, Stage, check_recorded

from ..utils.config import Config

logger = logging.getLogger(__name__)


def run(config: Config, files: Files, args: argparse.Namespace) -> dict[str, Any]:
    """E1-E5 on the best checkpoint: metrics.json, the two pictures, quick_validation.json;
    E6: the stage's cost.
    """
    import numpy as np
    from harness.cost import StageCost
    from harness.device import resolve_device

    from ..data.dataset import PreparedDigits
    from ..testing.checks import quick_checks
    from ..testing.evaluator import evaluate
    from ..testing.pictures import confusion_picture, hardest_picture
    from ..training.checkpoint import load_best_model
    from ..training.precision import strict_fp32

    device = resolve_device(config.device)
    check_recorded(files, "summary", ("best", "train_log"), "train")
    with strict_fp32(), StageCost("evaluate", device) as cost:
        data = PreparedDigits.load(files["digits"], files["manifest"]).to(device)
        model, checkpoint = load_best_model(files["best"], device)
        started = time.perf_counter()
        metrics = evaluate(model, data, config.eval)
        cost.time("evaluation_s", started)
    state = checkpoint["state"]
    metrics.update(checkpoint_epoch=state["epoch"], checkpoint_step=state["step"])
    write_bytes(
        files["confusion"],
        confusion_picture(
            np.array(metrics["confusion_matrix"]),
            f"test split: accuracy {metrics['test_accuracy']:.4f}",
        ),
    )
    indices = [record["test_index"] for record in metrics["hardest"]]
    write_bytes(files["hardest"], hardest_picture(data.test.counts[indices], metrics["hardest"]))
    write_json(files["metrics"], metrics)
    cost.throughput("images", "scored", count=metrics["test_images"] + len(data.val.labels))
    write_json(files["evaluate_cost"], cost.record())
    write_json(files["checks"], quick_checks(files, metrics))
    logger.info(
        "test accuracy %.4f, macro-F1 %.4f, loss %.4f nats (majority class %.4f, nearest "
        "centroid %.4f); validation accuracy %.4f",
        metrics["test_accuracy"],
        metrics["test_macro_f1"],
        metrics["test_loss_nats"],
        metrics["baselines"]["majority_class"]["test_accuracy"],
        metrics["baselines"]["nearest_centroid"]["test_accuracy"],
        metrics["val_accuracy"],
    )
    return metrics


STAGE = Stage(
    name="evaluate",
    run=run,
    help="score the best checkpoint beside the baselines, draw the confusion matrix and the "
    "hardest test images, check the quick validation (E1-E6)",
    sections=("device", "eval"),
    inputs=(
        "digits",
        "manifest",
        "best",
        "summary",
        "train_log",
        "train_cost",
    ),
    outputs={
        "metrics": "metrics.json",
        "confusion": "confusion.png",
        "hardest": "hardest.png",
        "checks": "quick_validation.json",
        "evaluate_cost": "cost/evaluate.json",
    },
    gpu=True,
)
