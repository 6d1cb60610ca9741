"""The plan's quick validation: its expectations, checked on a run's outputs."""

from __future__ import annotations

import math
from typing import Any

from harness.io import read_json, read_jsonl
from harness.stage import Files

# The files of the stages before `evaluate` that it reads: all there means that each ran.
EARLIER = ("digits", "manifest", "summary", "train_log", "best", "train_cost")


def quick_checks(files: Files, metrics: dict[str, Any]) -> dict[str, Any]:
    """The quick validation's expectations on a run's files and its metrics (what the
    evaluate stage writes as quick_validation.json, and the report shows).
    """
    summary = read_json(files["summary"])
    cost = read_json(files["train_cost"])
    steps = [r for r in read_jsonl(files["train_log"]) if r["kind"] == "train"]
    # The training stage's peak on its device: PyTorch's reserved GPU memory, else host RSS.
    peak = cost["torch_max_memory_reserved_bytes"] or cost["peak_host_rss_bytes"]
    checks = {
        "no import errors (every stage ran)": all(files[name].is_file() for name in EARLIER),
        "training loss lower at the end than at the start": summary["final_train_loss"]
        < summary["first_train_loss"],
        "no NaN or Inf in loss or gradients": len(steps) == summary["steps"]
        and all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in steps),
        "test accuracy above the majority baseline": metrics["beats_baselines"]["majority_class"],
        "peak memory within the device": peak < summary["environment"]["device_memory_bytes"],
    }
    return {"passed": all(checks.values()), "checks": checks}


def print_quick_validation(files: Files) -> bool:
    """The quick validation's figures and checks on the console; whether all passed."""
    summary, metrics = read_json(files["summary"]), read_json(files["metrics"])
    result = read_json(files["checks"])
    baselines = metrics["baselines"]
    print(
        f"epochs {summary['epochs_run']}, steps {summary['steps']}, train loss "
        f"{summary['first_train_loss']:.4f} -> {summary['final_train_loss']:.4f}; "
        f"test accuracy {metrics['test_accuracy']:.4f} (majority class "
        f"{baselines['majority_class']['test_accuracy']:.4f}, nearest centroid "
        f"{baselines['nearest_centroid']['test_accuracy']:.4f}), validation accuracy "
        f"{metrics['val_accuracy']:.4f}; {summary['train_time_s']:.1f} s training"
    )
    for check, ok in result["checks"].items():
        print(f"[{'ok' if ok else 'FAILED'}] {check}")
    return result["passed"]
