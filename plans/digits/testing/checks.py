"""The plan's quick validation: its expectations, checked on a run's outputs."""

from __future__ import annotations

from typing import Any

from harness.contract import print_checks, training_checks
from harness.io import read_json
from harness.stage import Files

# The files of the stages before `evaluate` that it reads: all there means that each ran.
EARLIER = ("digits", "manifest", "summary", "train_log", "best", "train_cost")


def quick_checks(files: Files, metrics: dict[str, Any]) -> dict[str, Any]:
    """The quick validation's expectations on a run's files and its metrics (what the
    evaluate stage writes as quick_validation.json, and the report shows): every stage
    ran, the training's (harness/contract.py), the majority baseline beaten.
    """
    checks = {
        "no import errors (every stage ran)": all(files[name].is_file() for name in EARLIER),
        **training_checks(files["summary"], files["train_log"], files["train_cost"]),
        "test accuracy above the majority baseline": metrics["beats_baselines"]["majority_class"],
    }
    return {"passed": all(checks.values()), "checks": checks}


def print_quick_validation(files: Files) -> bool:
    """The quick validation's figures and checks on the console; whether all passed."""
    summary, metrics = read_json(files["summary"]), read_json(files["metrics"])
    baselines = metrics["baselines"]
    print(
        f"epochs {summary['epochs_run']}, steps {summary['steps']}, train loss "
        f"{summary['first_train_loss']:.4f} -> {summary['final_train_loss']:.4f}; "
        f"test accuracy {metrics['test_accuracy']:.4f} (majority class "
        f"{baselines['majority_class']['test_accuracy']:.4f}, nearest centroid "
        f"{baselines['nearest_centroid']['test_accuracy']:.4f}), validation accuracy "
        f"{metrics['val_accuracy']:.4f}; {summary['train_time_s']:.1f} s training"
    )
    return print_checks(read_json(files["checks"])["checks"])
