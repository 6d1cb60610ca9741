"""Fixtures of the harness's own tests: tiny synthetic plans written into tmp_path (no
model, no torch, neither real plan), and the ways the workflow drives one: its run.py and
the planner, each in a subprocess of its own.

The synthetic plan (`make_plan`) keeps the contract (harness/contract.py) with three
stages whose run functions write small JSON files:

- `gather` (the first stage, section `data`) writes the numbers 1..data.size and the
  `manifest`;
- `fit` (trains=True; sections seed, device, train) reads them and "trains": the loss
  starts at the count of numbers and is multiplied by (1 - train.lr) each epoch; it writes
  `summary` and `train_log`;
- `score` (section device; its own option --label) checks what `fit` recorded and writes
  `metrics`, `checks` (passed: the final loss is below 0.3 of the first, so one epoch fails
  and two pass) and `notes`;

each writing its `<stage>_cost`. Its CPU preset (configs/cpu.yaml) sets data.size 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.plan import Plan, load_plan

STAGES = "(gather.STAGE, fit.STAGE, score.STAGE)"

INIT = '"""A synthetic plan for the harness\'s tests (D1: numbers, T1: decay)."""\n'

RUN_PY = '''\
"""The plan's one entry point."""

import sys
from pathlib import Path

from harness.cli import main

if __name__ == "__main__":
    sys.exit(main(Path(__file__).resolve().parent))
'''

CONFIG_PY = '''\
"""The synthetic plan's configuration: two sections besides seed and device."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from harness.sections import DEVICES, require, require_choice, require_seed


@dataclass(frozen=True)
class DataConfig:
    size: int = 4  # how many numbers the first stage gathers
    source: str | None = None  # --data-source; None: generated

    def check(self) -> None:
        require(1 <= self.size <= 1000, "data.size", "must be in [1, 1000]")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    lr: float = 0.5

    def check(self) -> None:
        require(self.epochs >= 1, "train.epochs", "must be >= 1")
        require(0 < self.lr <= 1, "train.lr", "must be in (0, 1]")


@dataclass(frozen=True)
class Config:
    seed: int | None = 7
    device: str | None = "auto"
    data: DataConfig | None = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig | None = dataclasses.field(default_factory=TrainConfig)

    def check(self) -> None:
        if self.seed is not None:
            require_seed(self.seed, "seed")
        if self.device is not None:
            require_choice(self.device, "device", DEVICES)
        for section in (self.data, self.train):
            if section is not None:
                section.check()
'''

DECAY_PY = '''\
"""T1: one epoch of "training"."""

RATE_FLOOR = 0.0


def decayed(loss: float, lr: float) -> float:
    return loss * max(1 - lr, RATE_FLOOR)
'''

CHECKS_PY = '''\
"""The quick validation, the data source and its record."""

from harness.io import read_json


def quick_validation(files):
    record = read_json(files["checks"])
    for name, ok in record["checks"].items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return bool(record["passed"])


def data_source(text):
    return {"data": {"source": text}}


def source_record(config):
    origin = "given" if config.data.source else "generated"
    return {"origin": origin, "location": config.data.source, "size": config.data.size}
'''

GATHER_PY = '''\
"""D1: gather the numbers (the shared data) and the manifest."""

from __future__ import annotations

import hashlib

from harness.io import write_json
from harness.stage import Stage

from ..utils.config import Config


def run(config: Config, files, args):
    numbers = list(range(1, config.data.size + 1))
    write_json(files["numbers"], numbers)
    text = ",".join(map(str, numbers))
    manifest = {
        "dataset": "toy numbers",
        "source_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "verified": False,
        "size": f"{len(numbers)} numbers",
        "origin": config.data.source or "generated",
    }
    write_json(files["manifest"], manifest)
    write_json(files["gather_cost"], {"stage": "gather", "wall_time_s": 0.0})
    return manifest


STAGE = Stage(
    name="gather",
    help="gather the numbers",
    sections=("data",),
    inputs=(),
    outputs={
        "numbers": "data/numbers.json",
        "manifest": "data/manifest.json",
        "gather_cost": "cost/gather.json",
    },
    run=run,
)
'''

FIT_PY = '''\
"""T1: fit, one epoch at a time."""

from __future__ import annotations

from harness.inputs import file_record, require
from harness.io import read_json, write_json, write_jsonl
from harness.stage import Stage

from ..utils.config import Config
from ..utils.decay import decayed


def run(config: Config, files, args):
    require([files["numbers"], files["manifest"]], "gather")
    numbers = read_json(files["numbers"])
    manifest = read_json(files["manifest"])
    initial = loss = float(len(numbers))
    log = []
    for epoch in range(1, config.train.epochs + 1):
        loss = decayed(loss, config.train.lr)
        log.append({"kind": "train", "step": epoch, "loss": loss, "lr": config.train.lr})
        log.append({"kind": "val", "step": epoch, "val_loss": loss, "final_loss": loss})
    write_jsonl(files["train_log"], log)
    summary = {
        "epochs_run": config.train.epochs,
        "steps": config.train.epochs,
        "steps_per_epoch": 1,
        "first_train_loss": log[0]["loss"],
        "final_train_loss": loss,
        "initial_loss": initial,
        "train_time_s": 0.0,
        "precision": "fp32",
        "environment": {"device": config.device},
        "seed": config.seed,
        "dataset": manifest["dataset"],
        "files": {"train_log": file_record(files["train_log"])},
    }
    write_json(files["summary"], summary)
    write_json(files["fit_cost"], {"stage": "fit", "wall_time_s": 0.0})
    return summary


STAGE = Stage(
    name="fit",
    help="fit the numbers",
    sections=("seed", "device", "train"),
    inputs=("numbers", "manifest"),
    outputs={
        "summary": "summary.json",
        "train_log": "train_log.jsonl",
        "fit_cost": "cost/fit.json",
    },
    run=run,
    gpu=True,
    trains=True,
)
'''

SCORE_PY = '''\
"""E1: score the fit."""

from __future__ import annotations

from harness.io import read_json, read_jsonl, write_json, write_text
from harness.stage import Stage, check_recorded


def add_options(parser):
    parser.add_argument("--label", default="the toy", help="what the metrics call the fit")


def run(config, files, args):
    check_recorded(files, "summary", ("train_log",), "fit")
    summary = read_json(files["summary"])
    final = summary["final_train_loss"]
    figure = {
        "name": "final_loss",
        "label": "final loss",
        "value": final,
        "unit": "",
        "format": ".4f",
        "summary": True,
        "baselines": {"start": summary["initial_loss"]},
    }
    metrics = {"figures": [figure], "model_name": args.label, "references": {"start": "unfit"}}
    write_json(files["metrics"], metrics)
    checks = {
        "converged": final < 0.3 * summary["initial_loss"],
        "logged every epoch": len(read_jsonl(files["train_log"])) == 2 * summary["epochs_run"],
    }
    write_json(files["checks"], {"passed": all(checks.values()), "checks": checks})
    write_text(files["notes"], f"{args.label}: final loss {final}\\n")
    write_json(files["score_cost"], {"stage": "score", "wall_time_s": 0.0})
    return metrics


STAGE = Stage(
    name="score",
    help="score the fit",
    sections=("device",),
    inputs=("summary", "train_log"),
    outputs={
        "metrics": "metrics.json",
        "checks": "checks.json",
        "notes": "notes.txt",
        "score_cost": "cost/score.json",
    },
    run=run,
    options=add_options,
)
'''


def plan_py(
    name: str, stages: str, direction: str, cpu_preset: str | None, preamble: str, title: str
) -> str:
    return f'''\
"""The synthetic plan's declaration."""

from __future__ import annotations

from dataclasses import replace

from harness.plan import Objective, Plan, Report

from .stages import fit, gather, score
from .utils.checks import data_source, quick_validation, source_record
from .utils.config import Config

{preamble}

def outputs_without(stage, *names):
    return {{key: place for key, place in stage.outputs.items() if key not in names}}


PLAN = Plan(
    name={name!r},
    title={title},
    document="plan.md",
    config=Config,
    stages={stages},
    objective=Objective(figure="final_loss", direction={direction!r}),
    epochs_key="train.epochs",
    quick_validation=quick_validation,
    data_source=data_source,
    source_record=source_record,
    report=Report(texts=("notes",)),
    cpu_preset={cpu_preset!r},
    cpu_deviation="on the CPU: no GPU",
)
'''


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


MakePlan = Callable[..., Path]


@pytest.fixture
def make_plan(tmp_path: Path) -> Iterator[MakePlan]:
    """make_plan(name, ...) → a synthetic plan folder <tmp_path>/<name> (or <parent>/<name>).

    `stages` (a Python expression in plan.py, where `replace` and `outputs_without(stage,
    *names)` are at hand), `direction`, `cpu_preset`, `title` (an expression) and
    `preamble` (lines of plan.py after its imports) vary the declaration; `files` adds or
    replaces files by relative path (None: removes one). The plans' packages that a test
    loads are forgotten after it, so each test loads its own.
    """
    names: list[str] = []

    def make(
        name: str = "toy_plan",
        *,
        parent: Path | None = None,
        stages: str = STAGES,
        direction: str = "minimize",
        cpu_preset: str | None = "cpu.yaml",
        title: str = '"a synthetic plan"',
        preamble: str = "",
        files: dict[str, str | None] | None = None,
    ) -> Path:
        folder = (parent or tmp_path) / name
        layout: dict[str, str | None] = {
            "__init__.py": INIT,
            "run.py": RUN_PY,
            "plan.py": plan_py(name, stages, direction, cpu_preset, preamble, title),
            "configs/cpu.yaml": "data:\n  size: 2\n",
            "configs/plan.yaml": "# the plan itself: no keys\n",
            "utils/__init__.py": "",
            "utils/config.py": CONFIG_PY,
            "utils/decay.py": DECAY_PY,
            "utils/checks.py": CHECKS_PY,
            "stages/__init__.py": "",
            "stages/gather.py": GATHER_PY,
            "stages/fit.py": FIT_PY,
            "stages/score.py": SCORE_PY,
            **(files or {}),
        }
        for relative, text in layout.items():
            if text is not None:
                write(folder / relative, text)
        names.append(name.replace("-", "_"))
        return folder

    yield make
    for module in list(sys.modules):
        if any(module == name or module.startswith(f"{name}.") for name in names):
            del sys.modules[module]


@pytest.fixture
def toy_plan(make_plan: MakePlan) -> Plan:
    """The synthetic plan, loaded in this process."""
    return load_plan(make_plan())


def subprocess_env() -> dict[str, str]:
    """This environment, with CUDA hidden: `device: auto` means the CPU on any machine."""
    return {**os.environ, "CUDA_VISIBLE_DEVICES": ""}


RunPlan = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_plan(tmp_path: Path) -> RunPlan:
    """run_plan(folder, *argv) → `python <folder>/run.py *argv`, run from tmp_path."""

    def run(folder: Path, *argv: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(folder / "run.py"), *map(str, argv)],
            cwd=tmp_path,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run


Planner = Callable[[Path, dict[str, Any]], subprocess.CompletedProcess[str]]


@pytest.fixture
def planner(tmp_path: Path) -> Planner:
    """planner(folder, spec) → `python -m harness.planner <folder> < spec.json`."""

    def plan(folder: Path, spec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "harness.planner", str(folder)],
            input=json.dumps(spec),
            cwd=tmp_path,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return plan
