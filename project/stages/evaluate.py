"""The `evaluate` stage (E1-E4): score the best checkpoint on the validation split, then
check the plan's quick-validation expectations on the run's outputs.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from harness.contract import print_checks, training_checks
from harness.io import read_json, write_json
from harness.stage import Files, Stage, check_recorded

from ..utils.config import Config

# The stage's machinery (torch) is imported when it runs, so that declaring the plan
# (plan.py: the planner, `run.py --help`, `run.py config`) imports none of it.

logger = logging.getLogger(__name__)


def run(config: Config, files: Files, args: argparse.Namespace) -> dict[str, Any]:
    """E1-E4 on the best checkpoint: metrics.json, then quick_validation.json."""
    from harness.cost import StageCost
    from harness.device import resolve_device, resolve_precision

    from ..data.dataset import DataFiles, PreparedData
    from ..testing.evaluator import evaluate
    from ..training.checkpoint import load_best_model

    device = resolve_device(config.device)
    check_recorded(files, "summary", ("best", "train_log"), "train")
    with StageCost("evaluate", device) as cost:
        data = PreparedData.load(DataFiles.named(files)).to(device)
        model, state, trained = load_best_model(files["best"], device)
        # Score in the precision the model was trained in (T5), not this stage's config.
        precision = resolve_precision(trained.train.precision, device)
        started = time.perf_counter()
        metrics = evaluate(model, data, config.eval, precision)  # ends reading sums back
        cost.time("evaluation_s", started)
    metrics.update(checkpoint_step=state["best_step"], precision=precision)
    write_json(files["metrics"], metrics)
    cost.throughput("characters", "scored", count=metrics["scored_chars"])
    write_json(files["evaluate_cost"], cost.record())
    write_json(files["checks"], quick_validation(files, metrics))
    logger.info(
        "validation: %.4f bpc (uniform %.4f, unigram %.4f), top-1 %.3f, top-5 %.3f",
        metrics["bits_per_char"],
        metrics["baselines"]["uniform"]["bits_per_char"],
        metrics["baselines"]["unigram"]["bits_per_char"],
        metrics["top1_accuracy"],
        metrics["top5_accuracy"],
    )
    return metrics


def quick_validation(files: Files, metrics: dict[str, Any]) -> dict[str, Any]:
    """The plan's quick-validation expectations, checked on the outputs of a run (what the
    workflow's report shows): the training's (harness/contract.py), then the baselines'.
    """
    checks = {
        **training_checks(files["summary"], files["train_log"], files["train_cost"]),
        "validation bpc below the unigram baseline": metrics["beats_unigram"],
        "validation bpc below the uniform baseline": metrics["beats_uniform"],
    }
    return {"passed": all(checks.values()), "checks": checks}


def print_quick_validation(files: Files) -> bool:
    """The quick validation's figures and checks on the console; whether all passed."""
    summary, metrics = read_json(files["summary"]), read_json(files["metrics"])
    print(
        f"epochs {summary['epochs_run']}, steps {summary['steps']}, train loss "
        f"{summary['first_train_loss']:.4f} -> {summary['final_train_loss']:.4f}, "
        f"val {metrics['bits_per_char']:.4f} bpc (unigram "
        f"{metrics['baselines']['unigram']['bits_per_char']:.4f}), "
        f"{summary['train_time_s']:.0f} s training"
    )
    return print_checks(read_json(files["checks"])["checks"])


STAGE = Stage(
    name="evaluate",
    gpu=True,
    run=run,
    help="score the best checkpoint against the baselines; the quick-validation checks (E1-E4)",
    sections=("device", "eval"),
    inputs=(
        "train_ids",
        "val_ids",
        "vocab",
        "manifest",
        "best",
        "summary",
        "train_log",
        "train_cost",
    ),
    outputs={
        "metrics": "metrics.json",
        "checks": "quick_validation.json",
        "evaluate_cost": "cost/evaluate.json",
    },
)
