"""The plan as the harness runs it: its declaration, its configuration, the quick validation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness.cli import main

PLAN_DIR = Path(__file__).resolve().parents[1]
FIGURE_FIELDS = ["name", "label", "value", "unit", "format", "summary", "baselines"]


def test_declaring_the_plan_imports_no_torch() -> None:
    code = (
        "import sys; from pathlib import Path; from harness.plan import load_plan; "
        f"plan = load_plan(Path({str(PLAN_DIR)!r})); "
        "print(plan.objective.figure, plan.report.pictures, 'torch' in sys.modules)"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.split() == ["val_accuracy", "('confusion',", "'hardest')", "False"]


def test_a_bad_setting_stops_before_any_work_naming_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(PLAN_DIR, ["--set", "model.arch=mlp", "--out-dir", str(tmp_path)])
    assert (
        code == 2
        and "config key 'model.arch' must be one of cnn, linear" in capsys.readouterr().err
    )
    assert not (tmp_path / "data").exists()


def test_the_quick_validation_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(PLAN_DIR, ["--epochs", "2", "--device", "cpu", "--out-dir", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert shown.count("[ok]") == 5 and "FAILED" not in shown
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_accuracy"] > metrics["baselines"]["majority_class"]["test_accuracy"]
    assert all(list(figure) == FIGURE_FIELDS for figure in metrics["figures"])
    for picture in ("confusion.png", "hardest.png"):
        assert (tmp_path / picture).read_bytes().startswith(b"\x89PNG")
    # a stage on its own, from the files of the run
    assert main(PLAN_DIR, ["evaluate", "--device", "cpu", "--out-dir", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
