"""What the workflow reads of a plan's outputs: the files it names, and their fields.

A plan's stages write these files under these output names (each stage declares its
outputs by name, harness/stage.py); `Plan` checks at load time that its stages write
every one of them. Beyond these, a plan's files are its own. The workflow reads nothing
else of a run, so any plan that keeps this contract runs through it.

- MANIFEST (the first stage, the prepared data): `dataset` (its name), `source_sha256`,
  `verified` (whether the digest was checked against the configured one) and `size` (a
  phrase: "1,115,394 characters").
- SUMMARY (the training stage): `epochs_run`, `steps`, `steps_per_epoch`,
  `first_train_loss` and `final_train_loss` (nats, means over `loss_window_steps`),
  `train_time_s`, `precision`, `environment` (harness/device.py: `environment`), `files` (SIZE and
  SHA-256 of TRAIN_LOG and the checkpoints, harness/inputs.py: file_record); optional:
  `parameters`, `parameters_by_module`, `compile`, `cuda_graph`, `world_size`.
- TRAIN_LOG (the training stage, JSON lines): `{"kind": "train", "step", "loss",
  "grad_norm", "lr"}` for each step, `{"kind": "val", "step", "val_loss", <the objective
  figure>}` for each validation, so that a search can prune on it.
- METRICS (the evaluating stage): `figures`, a list of `{name, label, value, unit, format,
  summary, baselines}` (`summary`: a column of results/summary.md; `baselines`: the
  reference models' values by key), `model_name` (what the report calls the trained model),
  `references` (each baseline key's label) and optional `note` (a line under the table).
- CHECKS (the evaluating stage): `{"passed": bool, "checks": {name: bool}}`, the plan's
  quick-validation expectations.
- `<stage>_cost` (every stage): harness/cost.py's record (wall time, memory peaks) and
  optional `throughput` (`StageCost.throughput`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.io import read_json, read_jsonl

MANIFEST = "manifest"
SUMMARY = "summary"
TRAIN_LOG = "train_log"
METRICS = "metrics"
CHECKS = "checks"
# The outputs besides the cost records, by the role of the stage that writes them.
OF_FIRST = (MANIFEST,)
OF_TRAINING = (SUMMARY, TRAIN_LOG)
OF_ANY = (METRICS, CHECKS)


def cost_output(stage: str) -> str:
    """The output name of a stage's cost record."""
    return f"{stage}_cost"


@dataclass(frozen=True)
class Figure:
    """One figure of METRICS and how to show it. The report lists every figure
    (`format(value, format)`, then the unit); the summary (results/summary.md) has a column
    for each one marked `summary`, its mean ± sd over a run's seeds.
    """

    name: str  # its key in metrics.json
    label: str  # what the report and the summary call it
    value: float
    unit: str  # "" for a plain number
    format: str  # a format spec: ".4f"
    summary: bool = False
    baselines: dict[str, float] = field(default_factory=dict)  # the reference models' values


def training_checks(summary: Path, train_log: Path, train_cost: Path) -> dict[str, bool]:
    """The quick-validation expectations that every plan has of its training, read from
    SUMMARY, TRAIN_LOG and the training stage's cost record: the loss went down, no loss
    or gradient norm was NaN or Inf, and the peak memory fitted the device (PyTorch's
    reserved GPU memory, or on the CPU the host's peak RSS).
    """
    record = read_json(summary)
    cost = read_json(train_cost)
    steps = [r for r in read_jsonl(train_log) if r["kind"] == "train"]
    peak = cost["torch_max_memory_reserved_bytes"] or cost["peak_host_rss_bytes"]
    return {
        "training loss lower at the end than at the start": record["final_train_loss"]
        < record["first_train_loss"],
        "no NaN or Inf in loss or gradients": len(steps) == record["steps"]
        and all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in steps),
        "peak memory within the device": peak < record["environment"]["device_memory_bytes"],
    }


def print_checks(checks: dict[str, bool]) -> bool:
    """A quick validation's checks on the console, one line each; whether all passed."""
    for check, ok in checks.items():
        print(f"[{'ok' if ok else 'FAILED'}] {check}")
    return all(checks.values())


def parameters_by_module(model: Any) -> dict[str, int]:
    """SUMMARY's `parameters_by_module`: the parameters of each file of the plan's model/
    package that defines a part of `model` (a torch module), keyed by the file's path in the
    plan folder ("model/attention.py": all L attention layers together), each parameter
    counted once a file (a module inside another of the same file adds nothing).
    """
    by_file: dict[str, dict[int, int]] = {}  # file → its parameters (by id), each once
    for module in model.modules():
        _, found, inside = type(module).__module__.partition(".model.")
        if found:
            path = f"model/{inside.replace('.', '/')}.py"
            by_file.setdefault(path, {}).update((id(p), p.numel()) for p in module.parameters())
    return {path: sum(sizes.values()) for path, sizes in by_file.items()}
