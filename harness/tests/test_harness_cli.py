"""harness/cli.py, as a plan's run.py runs it in a process of its own: `all` chains the
stages and exits by the quick validation, a stage runs alone from its --stage-config,
`config` prints the resolved configuration, and bad options stop it with one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

if TYPE_CHECKING:
    from conftest import MakePlan, RunPlan

PRESET_WARNING = "on the CPU: using the CPU preset configs/cpu.yaml"


def read(path: Path) -> object:
    return json.loads(path.read_text(encoding="utf-8"))


def test_all_chains_the_stages_and_passes_the_quick_validation(
    make_plan: MakePlan, run_plan: RunPlan, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = run_plan(make_plan(), "all", "--device", "cpu", "--out-dir", out)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "PASS  converged",
        "PASS  logged every epoch",
        f"outputs: {out.resolve()}",
    ]
    # No config file on the CPU: the plan's CPU preset (data.size 2) stood in, and said so.
    assert PRESET_WARNING in done.stderr
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == [
        "checks.json",
        "config/fit.json",
        "config/gather.json",
        "config/resolved.json",
        "config/score.json",
        "cost/fit.json",
        "cost/gather.json",
        "cost/score.json",
        "data/manifest.json",
        "data/numbers.json",
        "metrics.json",
        "notes.txt",
        "summary.json",
        "train_log.jsonl",
    ]
    # Each stage read what the one before it wrote.
    assert read(out / "data" / "numbers.json") == [1, 2]
    summary = read(out / "summary.json")
    assert summary["initial_loss"] == 2.0 and summary["epochs_run"] == 3
    assert summary["final_train_loss"] == 0.25 and summary["dataset"] == "toy numbers"
    (figure,) = read(out / "metrics.json")["figures"]
    assert figure["value"] == 0.25
    assert read(out / "checks.json")["passed"] is True
    # The stage configs as the workflow writes them: each stage's sections, and the whole.
    assert read(out / "config" / "gather.json") == {"data": {"size": 2, "source": None}}
    assert read(out / "config" / "fit.json") == {
        "seed": 7,
        "device": "cpu",
        "train": {"epochs": 3, "lr": 0.5},
    }
    assert read(out / "config" / "score.json") == {"device": "cpu"}
    assert read(out / "config" / "resolved.json")["source"] == "cpu-preset"


def test_all_is_the_default_command_and_a_failed_validation_exits_1(
    make_plan: MakePlan, run_plan: RunPlan, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = run_plan(make_plan(), "--epochs", "1", "--device", "cpu", "--out-dir", out)
    assert done.returncode == 1, done.stderr
    assert "FAIL  converged" in done.stdout.splitlines()
    assert read(out / "checks.json") == {
        "passed": False,
        "checks": {"converged": False, "logged every epoch": True},
    }
    assert read(out / "config" / "fit.json")["train"]["epochs"] == 1


def test_a_stage_runs_alone_from_its_stage_config(
    make_plan: MakePlan, run_plan: RunPlan, tmp_path: Path
) -> None:
    folder, out = make_plan(), tmp_path / "out"
    gathered = run_plan(
        folder, "gather", "--device", "cpu", "--set", "data.size=6", "--out-dir", out
    )
    assert gathered.returncode == 0, gathered.stderr
    assert read(out / "data" / "manifest.json")["size"] == "6 numbers"
    assert not (out / "summary.json").exists(), "a stage alone runs only itself"

    fit_config = tmp_path / "fit.json"
    fit_config.write_text(
        json.dumps({"seed": 3, "device": "cpu", "train": {"epochs": 5, "lr": 0.25}}),
        encoding="utf-8",
    )
    fitted = run_plan(folder, "fit", "--stage-config", fit_config, "--out-dir", out)
    assert fitted.returncode == 0, fitted.stderr
    summary = read(out / "summary.json")
    assert (summary["seed"], summary["epochs_run"]) == (3, 5)
    assert summary["final_train_loss"] == 6 * 0.75**5
    assert PRESET_WARNING not in fitted.stderr, "the stage config is the configuration"

    # Files by their own options, the rest under another --out-dir; the stage's own option.
    score_config = tmp_path / "score.json"
    score_config.write_text(json.dumps({"device": "cpu"}), encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    scored = run_plan(
        folder,
        "score",
        "--stage-config",
        score_config,
        "--summary",
        out / "summary.json",
        "--train-log",
        out / "train_log.jsonl",
        "--out-dir",
        elsewhere,
        "--label",
        "my toy",
    )
    assert scored.returncode == 0, scored.stderr
    assert read(elsewhere / "metrics.json")["model_name"] == "my toy"
    assert read(elsewhere / "checks.json")["passed"] is True
    assert (elsewhere / "notes.txt").read_text(encoding="utf-8").startswith("my toy: ")


@pytest.mark.parametrize(
    ("config", "extra", "says"),
    [
        (
            {"seed": 3, "device": "cpu", "train": {"epochs": 2, "lr": 0.25}},
            ["--set", "train.lr=0.1"],
            "error: --stage-config replaces --set; pass one or the other",
        ),
        (
            {"data": {"size": 3}},
            [],
            "config keys ['data'] are not read here (only ['seed', 'device', 'train'])",
        ),
        (
            {"seed": 3, "device": "cpu", "train": {"epochs": 0, "lr": 0.25}},
            [],
            "config key 'train.epochs' must be >= 1",
        ),
        (None, [], "--stage-config {path}: no such file"),
    ],
    ids=["with-set", "unread-section", "out-of-range", "no-file"],
)
def test_a_bad_stage_config_exits_2_with_one_line(
    make_plan: MakePlan,
    run_plan: RunPlan,
    tmp_path: Path,
    config: dict | None,
    extra: list[str],
    says: str,
) -> None:
    path = tmp_path / "fit.json"
    if config is not None:
        path.write_text(json.dumps(config), encoding="utf-8")
    out = tmp_path / "out"
    done = run_plan(make_plan(), "fit", "--stage-config", path, "--out-dir", out, *extra)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and says.format(path=path) in line
    assert not out.exists()


def test_a_stage_without_its_inputs_names_the_stage_that_makes_them(
    make_plan: MakePlan, run_plan: RunPlan, tmp_path: Path
) -> None:
    out = tmp_path / "empty"
    done = run_plan(make_plan(), "score", "--device", "cpu", "--out-dir", out)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"error: missing: {out / 'summary.json'}; run the `fit` stage first "
        "(snakemake --until fit, or python run.py fit)"
    )


def test_config_prints_the_resolved_configuration(
    make_plan: MakePlan, run_plan: RunPlan, tmp_path: Path
) -> None:
    folder = make_plan()
    done = run_plan(folder, "config", "--device", "cpu", "--set", "train.lr=0.25")
    assert done.returncode == 0, done.stderr
    source, printed = done.stdout.split("\n", 1)
    assert source == "# source: cpu-preset"
    assert yaml.safe_load(printed) == {
        "seed": 7,
        "device": "cpu",
        "data": {"size": 2, "source": None},
        "train": {"epochs": 3, "lr": 0.25},
    }
    assert not (tmp_path / "outputs").exists(), "config runs nothing"

    # A config file, then the options; `device: auto` decided (CUDA hidden: the CPU).
    chosen = tmp_path / "chosen.yaml"
    chosen.write_text("data:\n  size: 5\ntrain:\n  lr: 0.125\n", encoding="utf-8")
    argv = ["--config", chosen, "--epochs", "4", "--seed", "11", "--data-source", "n.txt"]
    done = run_plan(folder, "config", *argv)
    assert done.returncode == 0, done.stderr
    source, printed = done.stdout.split("\n", 1)
    assert source == f"# source: {chosen}"
    assert yaml.safe_load(printed) == {
        "seed": 11,
        "device": "cpu",
        "data": {"size": 5, "source": "n.txt"},
        "train": {"epochs": 4, "lr": 0.125},
    }


@pytest.mark.parametrize("command", ["all", "config", "fit"])
def test_set_of_an_unknown_key_exits_2_with_one_line_naming_it(
    make_plan: MakePlan, run_plan: RunPlan, tmp_path: Path, command: str
) -> None:
    out = tmp_path / "out"
    argv = [command, "--device", "cpu", "--set", "train.rate=0.1"]
    done = run_plan(make_plan(), *argv, *(["--out-dir", out] if command != "config" else []))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: unknown config key 'train.rate' (known keys here: train.epochs, train.lr)"
    ]
    assert done.stdout == ""
    assert not out.exists()


@pytest.mark.parametrize(
    ("assignment", "says"),
    [
        ("train.lr=fast", "config key 'train.lr' must be of type float, got 'fast' (str)"),
        ("train.epochs=0", "config key 'train.epochs' must be >= 1"),
        ("trian.lr=0.1", "unknown config key 'trian' (known keys here: seed, device, data, train)"),
        (
            "train.lr=[1",
            "--set 'train.lr=[1' is not valid YAML: line 1, column 12: "
            "expected ',' or ']', but got '<stream end>'",
        ),
        ("train.lr", "--set expects key=value (for example train.lr=3e-4), got 'train.lr'"),
    ],
    ids=["wrong-type", "out-of-range", "unknown-section", "bad-yaml", "no-value"],
)
def test_a_bad_set_exits_2_before_writing_anything(
    make_plan: MakePlan, run_plan: RunPlan, tmp_path: Path, assignment: str, says: str
) -> None:
    out = tmp_path / "out"
    done = run_plan(make_plan(), "--device", "cpu", "--out-dir", out, "--set", assignment)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: {says}"]
    assert not out.exists()


def test_help_lists_the_stages_and_a_stage_its_own_files_and_options(
    make_plan: MakePlan, run_plan: RunPlan
) -> None:
    folder = make_plan()
    done = run_plan(folder, "--help")
    assert done.returncode == 0
    commands = {
        line.split()[0]: " ".join(line.split()[1:])
        for line in done.stdout.splitlines()
        if line.startswith("    ")
    }
    assert commands == {
        "all": "gather, fit, score",
        "config": "print the resolved configuration, run nothing",
        "gather": "gather the numbers",
        "fit": "fit the numbers",
        "score": "score the fit",
    }
    done = run_plan(folder, "score", "--help")
    assert done.returncode == 0
    for option in ("--label", "--summary", "--train-log", "--metrics", "--score-cost"):
        assert option in done.stdout
    for other in ("--manifest", "--numbers", "--fit-cost"):
        assert other not in done.stdout
    assert "configs/cpu.yaml" in done.stdout, "--config names the CPU preset"
    refused = run_plan(folder, "score", "--manifest", "m.json")
    assert refused.returncode == 2 and "unrecognized arguments: --manifest" in refused.stderr
