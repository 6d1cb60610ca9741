"""The adaptive search (workflow/scripts/search.py): its spec refused in one line before any
job, asks that depend on the stored history alone (the same trials whether or not the
search was cut short, on Optuna's SQLite storage), the pruning rule, the trials' files,
each in the direction and on the figure that the plan declares; then, on the real text, a
8-trial search of the character-level plan, and a 6-trial search of the digits plan that
maximises its objective, each with its twin killed three times and resumed.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import math
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import psutil
import pytest
import yaml
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from snakemake.cli import get_argument_parser
from test_resume import logged_steps
from workflow_runs import (
    HANG,
    REPO,
    SHARED_DATA,
    configure,
    copy_repo,
    snakemake,
    start_as_from_a_terminal,
    stop_tree,
    tiny_repo,
    trainer_of,
    workflow_env,
)

import search
import search_summary
import sqlite_store
from resolve import declared_plan
from search_spec import SearchError, SearchPlan, Shown, trial_runs
from search_study import (
    RUN_ATTR,
    SPEC_ATTR,
    batch_numbers,
    direction_of,
    draw_params,
    earlier_batches,
    live,
    open_study,
    prune_here,
    spec_record,
    start_trial,
    storage_errors,
    suggest,
)
from search_summary import PRUNED_ATTR, REASON_ATTR, SEEDS_ATTR, write_summary
from search_trials import failure_reason, refused_runs, stop_training, validation_curve

# The plan folders, as config/config.yaml's `plan:` names them.
CHARGPT = "project"  # minimises its objective
DIGITS = "plans/digits"  # maximises its objective

# Every kind of range: log-uniform, uniform, integer, categorical.
SPACE = {
    "train.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
    "model.dropout": {"low": 0.0, "high": 0.2},
    "model.n_layer": {"low": 1, "high": 3, "int": True},
    "model.n_head": {"choices": [1, 2, 3]},
}
SPEC = {"space": SPACE, "trials": 8, "parallel": 2, "startup_trials": 2}


def spec_in(tmp_path: Path, **settings: Any) -> dict[str, Any]:
    return {**SPEC, "storage": f"sqlite:///{tmp_path / 'study.db'}", **settings}


@functools.cache
def plan_of(folder: str) -> SearchPlan:
    """What the search reads of the declaration of a plan folder of this repository."""
    return SearchPlan.of(folder, declared_plan(str(REPO / folder)))


def digits_settings(**settings: Any) -> dict[str, Any]:
    """config/config.yaml's keys for the digits plan (its full configuration, the data of
    the shared mirror), plus `settings`.
    """
    if not (SHARED_DATA / "digits" / "digits.csv").is_file():
        pytest.skip(f"the verified digits copy is not at {SHARED_DATA}")
    return {"plan": DIGITS, "project_config": "auto", "data_source": str(SHARED_DATA), **settings}


def made_up_objective(params: dict[str, Any]) -> float:
    """A smooth stand-in for training: best near lr 3e-3, no dropout, 2 layers."""
    lr = math.log10(params["train.lr"]) + 2.5
    return 1.5 + lr**2 + params["model.dropout"] + 0.1 * abs(params["model.n_layer"] - 2)


def drive(spec: dict[str, Any], batches: int | None = None) -> optuna.Study:
    """What search.py does to the study, with a made-up objective for training: a fresh
    study object (as after a restart), each batch asked, then told; n_head 3 fails.
    """
    study = open_study(spec, spec["parallel"], plan_of(CHARGPT))
    starts = list(range(0, spec["trials"], spec["parallel"]))[:batches]
    for start in starts:
        for number in batch_numbers(start, spec["parallel"], spec["trials"]):
            start_trial(study, spec, number, start)
        for trial in study.get_trials()[start : start + spec["parallel"]]:
            if trial.state == TrialState.RUNNING:
                tell(study, trial)
    return study


def tell(study: optuna.Study, trial: FrozenTrial) -> None:
    """The made-up outcome of a trial: n_head 3 fails, as it would with d_model 32."""
    if trial.params["model.n_head"] == 3:
        study.tell(trial.number, state=TrialState.FAIL)
    else:
        study.tell(trial.number, made_up_objective(trial.params))


def outcome(study: optuna.Study) -> list[tuple[Any, ...]]:
    return [(t.number, t.state, t.params, t.value) for t in study.get_trials()]


# -- the spec ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("search_spec", "message"),
    [
        ({**SPEC, "trials": 0}, "search.trials: 0 is less than the minimum of 1"),
        ({**SPEC, "trails": 3}, "'trails' was unexpected"),
        ({**SPEC, "space": {}}, "search.space: {} should be non-empty"),
        (
            {**SPEC, "space": {"training.lr": {"low": 1, "high": 2}}},
            "unknown config key 'training'",
        ),
        ({**SPEC, "space": {"train.lr": {"low": 1e-2, "high": 1e-4}}}, "low must be below high"),
        (
            {**SPEC, "space": {"train.lr": {"low": 0.0, "high": 1e-2, "log": True}}},
            "search.space.train.lr: a log range needs low > 0",
        ),
        (
            {**SPEC, "space": {"model.n_layer": {"low": 1, "high": 2.5, "int": True}}},
            "an int range needs whole-number low and high",
        ),
        ({**SPEC, "space": {"seed": {"choices": [1, 2]}}}, "search.space: 'seed' cannot be"),
        ({**SPEC, "overrides": {"seed": 3}}, "search.overrides: 'seed' cannot be searched or set"),
        (
            {**SPEC, "overrides": {"train.lrr": 1e-3}},
            "search.overrides: unknown config key 'train.lrr'",
        ),
        (
            {**SPEC, "overrides": {"train.lr": 1e-3}},
            "search: train.lr in both space and overrides",
        ),
        (
            {**SPEC, "space": {"train.lrr": {"low": 1e-4, "high": 1e-2}}},
            "search.space.train.lrr: unknown config key 'train.lrr'",
        ),
        (
            {**SPEC, "space": {"model.n_head": {"choices": [2, "four"]}}},
            "search.space.model.n_head: config key 'model.n_head' must be of type int",
        ),
    ],
)
def test_a_bad_spec_is_one_line_before_any_job(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    search_spec: dict[str, Any],
    message: str,
) -> None:
    refused_in_one_line(tmp_path, monkeypatch, capsys, {"search": search_spec}, message)


def refused_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    settings: dict[str, Any],
    message: str,
    code: int = 2,
) -> Path:
    """search.py in a copy configured with `settings` ends with `code` and one line that
    holds `message`; returns the copy.
    """
    repo = copy_repo(tmp_path / "repo")
    configure(repo, **settings)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("CHARGPT_DATA_MIRROR", str(SHARED_DATA))
    assert search.main([]) == code
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("search.py: error: "), error
    assert message in error
    if code == 2:
        assert not (repo / "results" / "search").exists(), "nothing was made"
    return repo


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"search": {**SPEC, "space": {"model.n_layer": {"low": 1, "high": 3, "int": True}}}},
            "search.space.model.n_layer: unknown config key 'model.n_layer'",
        ),
        (
            {"search": {"space": {"model.arch": {"choices": ["cnn", 3]}}, "trials": 2}},
            "search.space.model.arch: config key 'model.arch' must be of type str",
        ),
        ({"plan": "plans/none", "search": SPEC}, "plans/none: not a plan folder"),
    ],
)
def test_the_spec_is_checked_against_the_configured_plan(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    settings: dict[str, Any],
    message: str,
) -> None:
    """The digits plan's keys, not the character-level plan's; a plan folder that cannot be
    loaded is one line too.
    """
    refused_in_one_line(tmp_path, monkeypatch, capsys, digits_settings(**settings), message)


def test_a_study_of_another_plan_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The study that a search of the character-level plan made, searched again for the
    digits plan (the same keys searched): refused before any job.
    """
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    spec = {"space": {"train.lr": SPACE["train.lr"]}, "trials": 2, "storage": storage}
    open_study(spec, 1, plan_of(CHARGPT))
    settings = digits_settings(search={**spec, "parallel": 1})
    message = "was made with objective 'bits_per_char', now 'val_accuracy'"
    refused_in_one_line(tmp_path, monkeypatch, capsys, settings, message, code=1)


def test_a_search_refuses_snakemakes_own_config_options(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as stop:
        search.main(["--config", "seeds=[1]"])
    assert stop.value.code == 2
    assert "--config: the search reads config/config.yaml" in capsys.readouterr().err


def test_runs_at_once_come_from_the_gpu_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert search.gpu_slots([]) == 1, "profiles/default: resources gpu=1"
    assert search.gpu_slots(["--resources", "gpu=3", "mem_mb=100"]) == 3
    assert search.gpu_slots(["--resources=gpu=2"]) == 2
    assert search.gpu_slots(["--workflow-profile", "profiles/slurm"]) == 20, "its job limit"


@pytest.mark.parametrize(
    ("extra", "gpu"), [([], 2), (["--resources", "gpu=1", "mem_mb=100"], 1), (["-n"], 2)]
)
def test_snakemake_gets_the_batchs_targets_and_gpu_slots(extra: list[str], gpu: int) -> None:
    """As Snakemake's own parser reads the command: every target, `parallel` GPU slots
    unless the options give theirs.
    """
    wanted = ["results/search_0000/seed1/ml_res.md", "results/search_0001/seed1/ml_res.md"]
    command = search.snakemake_command("2", extra, 2, wanted)
    assert command[:3] == [sys.executable, "-m", "snakemake"]
    args = get_argument_parser().parse_args(command[3:])
    assert args.targets == wanted and args.keep_going and args.cores == 2
    assert args.resources["gpu"].value == gpu


def test_the_workflow_reads_the_trials_runs_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert trial_runs(SPEC) == {}, "no trial before the search ran"
    runs = {"search_0000": {"overrides": {"train.lr": 1e-3}}}
    folder = tmp_path / "results" / "search" / "search"
    folder.mkdir(parents=True)
    (folder / "runs.json").write_text(json.dumps(runs))
    assert trial_runs(SPEC) == runs
    assert trial_runs(None) == {}
    (folder / "runs.json").write_text("{")
    with pytest.raises(
        SearchError, match=re.escape("run `python workflow/scripts/search.py` again")
    ):
        trial_runs(SPEC)


# -- asking: the same trials, cut short or not ----------------------------------------------


def test_the_same_seed_asks_the_same_trials(tmp_path: Path) -> None:
    first = outcome(drive(spec_in(tmp_path / "a")))
    assert first == outcome(drive(spec_in(tmp_path / "b")))
    assert [number for number, *_ in first] == list(range(SPEC["trials"]))
    other = outcome(drive(spec_in(tmp_path / "c", sampler_seed=1)))
    assert [p for _, _, p, _ in other] != [p for _, _, p, _ in first]
    for _, _, params, _ in first:
        assert 1e-4 <= params["train.lr"] <= 1e-2 and 0.0 <= params["model.dropout"] <= 0.2
        assert params["model.n_layer"] in {1, 2, 3} and params["model.n_head"] in {1, 2, 3}


def enqueue(study: optuna.Study, spec: dict[str, Any], number: int, start: int) -> None:
    """Write trial `number` of the batch at `start` as start_trial does, and stop there:
    a waiting trial with its values fixed.
    """
    params = draw_params(spec, earlier_batches(study, start), number, direction_of(study))
    study.enqueue_trial(params, user_attrs={RUN_ATTR: f"search_{number:04d}"})


def cut_after_writing(study: optuna.Study, spec: dict[str, Any], start: int) -> None:
    """Killed between writing the batch's first trial and starting it."""
    enqueue(study, spec, start, start)


def cut_half_asked(study: optuna.Study, spec: dict[str, Any], start: int) -> None:
    """Killed after starting the batch's second trial and suggesting only its first key."""
    start_trial(study, spec, start, start)
    enqueue(study, spec, start + 1, start)
    study.ask()
    key = sorted(spec["space"])[0]
    suggest(live(study, study.get_trials()[start + 1]), key, spec["space"][key])


def cut_half_told(study: optuna.Study, spec: dict[str, Any], start: int) -> None:
    """Killed after telling the batch's first trial."""
    for number in batch_numbers(start, spec["parallel"], spec["trials"]):
        start_trial(study, spec, number, start)
    tell(study, study.get_trials()[start])


@pytest.mark.parametrize(
    ("cut", "start"), [(cut_after_writing, 2), (cut_half_asked, 4), (cut_half_told, 6)]
)
def test_a_search_cut_short_and_run_again_asks_what_an_uncut_one_asks(
    tmp_path: Path, cut: Any, start: int
) -> None:
    uncut = outcome(drive(spec_in(tmp_path / "uncut")))
    spec = spec_in(tmp_path / "cut")
    cut(drive(spec, batches=start // SPEC["parallel"]), spec, start)
    assert outcome(drive(spec)) == uncut


def test_a_study_made_by_another_spec_is_refused(tmp_path: Path) -> None:
    spec, plan = spec_in(tmp_path), plan_of(CHARGPT)
    open_study(spec, 2, plan)
    open_study({**spec, "trials": 20}, 2, plan)  # more trials: the same study, continued
    with pytest.raises(SearchError, match="made with parallel 2, now 3"):
        open_study(spec, 3, plan)
    with pytest.raises(SearchError, match="made with sampler_seed 0, now 5"):
        open_study({**spec, "sampler_seed": 5}, 2, plan)
    with pytest.raises(SearchError, match="made with objective 'bits_per_char', now 'val_acc"):
        open_study(spec, 2, plan_of(DIGITS))
    with pytest.raises(SearchError, match="made with direction 'minimize', now 'maximize'"):
        open_study(spec, 2, replace(plan, direction="maximize"))


def test_a_study_is_made_in_the_plans_direction(tmp_path: Path) -> None:
    """A new study optimises in the plan's direction. The direction Optuna stores decides
    for a study whose record predates the objective's (it lacks the objective and the
    direction): one of another direction is refused.
    """
    assert open_study(spec_in(tmp_path / "a"), 2, plan_of(DIGITS)).direction == (
        StudyDirection.MAXIMIZE
    )
    spec, plan = spec_in(tmp_path / "b"), plan_of(CHARGPT)
    study = open_study(spec, 2, plan)
    assert study.direction == StudyDirection.MINIMIZE
    older = {
        k: v for k, v in spec_record(spec, 2, plan).items() if k not in ("objective", "direction")
    }
    study.set_user_attr(SPEC_ATTR, older)
    open_study(spec, 2, plan)
    with pytest.raises(SearchError, match="made with direction 'minimize', now 'maximize'"):
        open_study(spec, 2, replace(plan, direction="maximize"))


# -- pruning ---------------------------------------------------------------------------------


def test_the_pruner_judges_against_earlier_batches_only(tmp_path: Path) -> None:
    """Trial 2 (batch 1) at step 10: 1.08 against the median of trials 0 and 1 (1.05) is
    pruned; trial 3 of its own batch, complete meanwhile with 9.0, would move the median
    to 1.1 and save it: it does not count, so a resumed search judges alike.
    """
    spec = spec_in(tmp_path, startup_trials=2, pruning=True)
    study = open_study(spec, 2, plan_of(CHARGPT))
    for start, values in ((0, (1.0, 1.1)), (2, (1.08, 9.0))):
        for number, value in zip(batch_numbers(start, 2, 4), values, strict=True):
            trial = start_trial(study, spec, number, start)
            live(study, trial).report(value, 10)
            if start == 0:
                study.tell(number, value)
    trial = study.get_trials()[2]
    assert prune_here(study, spec, trial, 10, start=2)
    study.tell(3, 9.0)
    assert prune_here(study, spec, study.get_trials()[2], 10, start=2)
    assert not prune_here(study, {**spec, "startup_trials": 3}, trial, 10, start=2)


@pytest.mark.parametrize(
    ("folder", "value", "pruned"),
    [(DIGITS, 0.92, True), (DIGITS, 0.97, False), (CHARGPT, 0.92, False), (CHARGPT, 0.97, True)],
)
def test_the_pruner_judges_in_the_plans_direction(
    tmp_path: Path, folder: str, value: float, pruned: bool
) -> None:
    """Trial 2 at step 10 against the median of trials 0 and 1 there (0.95): a value below
    it is worse where the plan maximises, better where it minimises.
    """
    spec = spec_in(tmp_path, startup_trials=2, pruning=True)
    study = open_study(spec, 2, plan_of(folder))
    for number, earlier in ((0, 1.0), (1, 0.9)):
        live(study, start_trial(study, spec, number, 0)).report(earlier, 10)
        study.tell(number, earlier)
    live(study, start_trial(study, spec, 2, 2)).report(value, 10)
    assert prune_here(study, spec, study.get_trials()[2], 10, start=2) == pruned


# -- a trial's files -------------------------------------------------------------------------


def test_a_failed_trial_is_told_the_first_error_of_its_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    logs = tmp_path / "results" / "search_0001" / "seed2" / "logs"
    logs.mkdir(parents=True)
    (logs / "train.log").write_text(
        "2026-01-01 10:00:00 INFO training.trainer: step 10 loss 4.1\n"
        "error: non-finite training value at step 20: loss nan\n"
        "gpu_monitor.py: error: cannot write the results\n"
    )
    plan = plan_of(CHARGPT)
    reason = failure_reason("search_0001", [2], plan)
    assert reason == "train, seed 2: error: non-finite training value at step 20: loss nan"
    assert "did not complete it" in failure_reason("search_0002", [1], plan)


@pytest.mark.parametrize("plan_folder", [CHARGPT, DIGITS])
def test_the_validation_curve_is_the_mean_at_steps_every_seed_trained_past(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plan_folder: str
) -> None:
    """The plan's objective figure of its training log's val records, read from its
    training stage's work folder while it trains.
    """
    monkeypatch.chdir(tmp_path)
    plan = plan_of(plan_folder)
    one = tmp_path / "results" / "t" / "seed1"
    two = tmp_path / "results" / "t" / "seed2" / f"{plan.trainer}.resume"  # still training
    for folder in (one, two):
        folder.mkdir(parents=True)

    def lines(*records: tuple[str, int, float]) -> str:
        fields = {"val": plan.objective, "train": "loss"}
        return "".join(
            json.dumps({"kind": kind, "step": step, fields[kind]: value}) + "\n"
            for kind, step, value in records
        )

    # Seed 1 finished at step 50 (its last validation, the end, is not judged); seed 2 is
    # at step 30, its log's last line still being written.
    (one / "train_log.jsonl").write_text(
        lines(("train", 20, 4.0), ("val", 20, 3.0), ("train", 50, 3.5), ("val", 50, 2.0))
    )
    (two / "train_log.jsonl").write_text(
        lines(("train", 20, 4.0), ("val", 20, 2.0), ("train", 30, 3.9)) + '{"kind": "va'
    )
    assert validation_curve("t", [1, 2], plan) == {20: 2.5}


def test_a_pruned_trials_training_is_stopped_by_its_plan_folder_and_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM to the process whose command line holds the plan's run.py, its training
    stage and the trial's folder; not to another plan's, another stage's or another run's.
    """
    monkeypatch.chdir(tmp_path)
    plan = plan_of(DIGITS)
    work = ["--work-dir", "results/t/seed1/train.resume"]
    commands = {
        "the trial's training": [f"{DIGITS}/run.py", "train", *work],
        "another plan's": ["project/run.py", "train", *work],
        "another stage's": [f"{DIGITS}/run.py", "evaluate", "--stage-config", "results/t/x"],
        "another run's": [f"{DIGITS}/run.py", "train", "--work-dir", "results/u/seed1/t"],
    }
    sleeping = [sys.executable, "-c", "import time; time.sleep(120)"]
    processes = {name: subprocess.Popen([*sleeping, *args]) for name, args in commands.items()}
    try:
        assert stop_training("t", plan) == 1
        assert processes.pop("the trial's training").wait(timeout=30) == -signal.SIGTERM
        assert {name: p.poll() for name, p in processes.items()} == dict.fromkeys(processes)
    finally:
        for process in processes.values():
            process.kill()
            process.wait()


def test_an_impossible_combination_is_refused_with_the_projects_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    config["project_config"] = "project/configs/cpu.yaml"  # d_model 128
    runs = {f"r{n}": {"overrides": {"model.n_head": n}} for n in (2, 3, 4, 5)}
    refused = refused_runs(config, runs)
    assert set(refused) == {"r3", "r5"}
    assert refused["r3"] == "config key 'model.d_model' must be divisible by model.n_head"


def test_the_summary_names_the_best_trial_and_every_state(tmp_path: Path) -> None:
    spec, plan = spec_in(tmp_path, trials=4, pruning=True), plan_of(CHARGPT)
    study = open_study(spec, 2, plan)
    batch = [start_trial(study, spec, number, 0) for number in (0, 1)]
    for trial, values in zip(batch, ({"1": 2.0, "2": 2.2}, {"1": 1.8, "2": 1.9}), strict=True):
        live(study, trial).set_user_attr(SEEDS_ATTR, values)
        study.tell(trial.number, sum(values.values()) / 2)
    pruned, failed = (start_trial(study, spec, number, 2) for number in (2, 3))
    live(study, pruned).report(2.5, 20)
    live(study, pruned).set_user_attr(PRUNED_ATTR, 20)
    study.tell(2, state=TrialState.PRUNED)
    live(study, failed).set_user_attr(REASON_ATTR, "config key 'model.d_model' must be ...")
    study.tell(3, state=TrialState.FAIL)
    shown = Shown("validation bits per character", "bits/char", ".4f")
    write_summary(tmp_path, study.get_trials(), spec, spec["storage"], 2, plan, shown)
    summary = (tmp_path / "summary.md").read_text()
    assert "Trial 1, run `search_0001`" in summary
    assert "**1.8500 ± 0.0707 bits/char** (mean ± sd over 2 seeds" in summary
    cells = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in summary.splitlines()
        if "| search_" in line
    ]
    rows = {row[0]: row for row in cells}
    assert [rows[n][2] for n in "0123"] == ["complete", "complete", "pruned", "failed"]
    assert rows["2"][3] == "(2.5000 at step 20)"
    assert rows["2"][-1] == "pruned at step 20 (median rule)"
    assert rows["3"][-1] == "config key 'model.d_model' must be ..."
    assert (tmp_path / "search.png").stat().st_size > 0
    assert re.search(r"4 of 4 trials \(2 complete, 1 pruned, 1 failed\)", summary)
    assert "Objective: validation bits per character (`bits_per_char` of each seed's" in summary
    assert re.search(r"\| Objective \(bits/char\) +\|", summary)


def test_the_summary_of_a_maximised_objective_names_the_highest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The digits plan: the best trial and the best-so-far curve are the highest values;
    the objective is shown by its label (a plain number: no unit), else by its name.
    """
    spec, plan = spec_in(tmp_path, trials=3), plan_of(DIGITS)
    study = open_study(spec, 3, plan)
    for number, value in enumerate((0.95, 0.97, 0.93)):
        live(study, start_trial(study, spec, number, 0)).set_user_attr(SEEDS_ATTR, {"1": value})
        study.tell(number, value)
    drawn: list[Any] = []
    monkeypatch.setattr(search_summary, "save", lambda figure, path: drawn.append(figure))
    shown = Shown("validation accuracy", "", ".4f")
    write_summary(tmp_path, study.get_trials(), spec, spec["storage"], 3, plan, shown)
    summary = (tmp_path / "summary.md").read_text()
    assert "Trial 1, run `search_0001`" in summary
    assert "**0.9700 validation accuracy** (one seed: 0.9700 (seed 1))" in summary
    assert (
        "Objective: validation accuracy (`val_accuracy` of each seed's metrics.json), the mean "
        "over the trial's seeds, maximised." in summary
    )
    (curve,) = [line for line in drawn[0].axes[0].get_lines() if line.get_label() == "best so far"]
    assert list(curve.get_ydata()) == [0.95, 0.97, 0.97]
    assert "(higher is better)" in drawn[0].get_suptitle()
    write_summary(
        tmp_path, study.get_trials(), spec, spec["storage"], 3, plan, Shown(plan.objective)
    )
    summary = (tmp_path / "summary.md").read_text()
    assert "**0.9700 val_accuracy**" in summary
    assert re.search(r"\| Objective \(val_accuracy\) +\|", summary)
    assert "Objective: `val_accuracy` of each seed's metrics.json, the mean" in summary


# -- the storage -----------------------------------------------------------------------------

# The search's default storage, relative to the repository root.
STORE = Path("results/search/search.db")
# Longer than the busy timeout of Python's sqlite3 (5 s): a lock held this long is waited
# for only by the search's own, longer wait (sqlite_store.SQLITE_WAIT_S).
HOLD_S = 6
# What the advice for a damaged storage must never be: it would delete finished results.
DESTRUCTIVE = re.compile(r"\b(remove|delete|rm)\b", re.IGNORECASE)


def damage_a_page(path: Path) -> bytes:
    """Overwrite the file's second 4 KiB page (bytes 4096..8191) with garbage; the bytes."""
    with path.open("r+b") as handle:
        handle.seek(4096)
        handle.write(random.Random(0).randbytes(4096))
    return path.read_bytes()


def hold_lock(path: Path, seconds: float | None = None) -> subprocess.Popen[str]:
    """Another process that holds an exclusive lock on the SQLite file `path` (no reader or
    writer gets in) until its stdin closes, or for `seconds`; returned once it holds it.
    """
    wait = "sys.stdin.read()" if seconds is None else f"time.sleep({seconds})"
    code = (
        "import sqlite3, sys, time\n"
        f"connection = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "connection.execute('BEGIN EXCLUSIVE')\n"
        "print('held', flush=True)\n"
        f"{wait}\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.close()
    assert holder.wait(timeout=HANG) == 0


def files_under(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def finish_search(repo: Path, spec: dict[str, Any]) -> list[tuple[Any, ...]]:
    """In `repo`, the study and files of a finished search of `spec` (one seed, 1), as
    search.py leaves them, with made-up objectives (nothing trains): each complete trial
    with its seed's objective and metrics.json, n_head 3 failed with a reason. Returns the
    study's record.
    """
    spec = {**spec, "storage": f"sqlite:///{repo / STORE}"}
    study = open_study(spec, spec["parallel"], plan_of(CHARGPT))
    figure = {"name": "bits_per_char", "label": "validation bits per character"}
    for start in range(0, spec["trials"], spec["parallel"]):
        for number in batch_numbers(start, spec["parallel"], spec["trials"]):
            trial = start_trial(study, spec, number, start)
            if trial.params["model.n_head"] == 3:
                live(study, trial).set_user_attr(REASON_ATTR, "n_head must divide d_model")
                study.tell(number, state=TrialState.FAIL)
                continue
            value = made_up_objective(trial.params)
            seed = repo / "results" / trial.user_attrs[RUN_ATTR] / "seed1"
            seed.mkdir(parents=True)
            entry = {**figure, "unit": "bits/char", "format": ".4f", "value": value}
            (seed / "metrics.json").write_text(json.dumps({"figures": [entry]}))
            live(study, trial).set_user_attr(SEEDS_ATTR, {"1": value})
            study.tell(number, value)
    return record(study)


def test_a_damaged_storage_is_one_line_and_a_restored_one_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A finished study whose storage has a damaged page: the search ends in one line that
    says so and how to fix it (never by deleting), exits 1 and leaves the storage and
    results/ as they were. With the storage restored from its copy, the same command ends
    the search with the same trials, none lost or doubled.
    """
    repo = copy_repo(tmp_path / "repo")
    spec = {**SPEC, "trials": 4}
    configure(repo, seeds=[1], search=spec)
    finished = finish_search(repo, spec)
    store = repo / STORE
    copy = store.read_bytes()
    damaged = damage_a_page(store)
    before = files_under(repo / "results")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("CHARGPT_DATA_MIRROR", str(SHARED_DATA))

    assert search.main([]) == 1
    out, error = capsys.readouterr()
    assert out == "" and error.count("\n") == 1, error
    assert error.startswith(
        f"search.py: error: the Optuna storage sqlite:///{STORE} is damaged ("
    ), error
    assert "restore the file from a copy" in error and not DESTRUCTIVE.search(error)
    assert store.read_bytes() == damaged, "the attempt wrote to the damaged storage"
    after = files_under(repo / "results")
    assert {path: after[path] for path in before} == before
    assert {path.name for path in set(after) - set(before)} <= {".lock"}

    store.write_bytes(copy)  # restored
    assert search.main([]) == 0, capsys.readouterr().err
    assert record(load(repo)) == finished
    assert [number for number, *_ in finished] == [0, 1, 2, 3]
    summary = (repo / "results" / "search" / "search" / "summary.md").read_text()
    assert "4 of 4 trials" in summary


def test_a_storage_damaged_after_it_was_opened_is_one_line(tmp_path: Path) -> None:
    """The damage that a later call meets (Optuna's StorageInternalError, three tracebacks
    before) is the same line, from any storage call that the search makes.
    """
    spec = spec_in(tmp_path)
    study = drive(spec, batches=1)
    damaged = damage_a_page(tmp_path / "study.db")
    with (
        pytest.raises(SearchError, match="is damaged") as refused,
        storage_errors(spec["storage"]),
    ):
        start_trial(study, spec, 2, 2)
    assert str(refused.value).startswith(f"the Optuna storage {spec['storage']} is damaged (")
    assert not DESTRUCTIVE.search(str(refused.value))
    assert (tmp_path / "study.db").read_bytes() == damaged


def test_a_locked_storage_is_waited_for_then_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock that another process holds on the storage: waited for (longer than sqlite3's
    own 5 s), at the opening and at a later call; held past the search's wait, one line that
    names the storage and the other process, nothing written. Once it is released, the
    study goes on as if never stopped: nothing lost or doubled.
    """
    uncut = outcome(drive(spec_in(tmp_path / "uncut")))
    spec = spec_in(tmp_path)
    path = tmp_path / "study.db"
    drive(spec, batches=1)
    holder = hold_lock(path, HOLD_S)
    study = open_study(spec, spec["parallel"], plan_of(CHARGPT))  # once the lock is released
    assert holder.wait(timeout=HANG) == 0
    assert [t.number for t in study.get_trials()] == [0, 1]

    monkeypatch.setattr(sqlite_store, "SQLITE_WAIT_S", 0.1)
    held = path.read_bytes()
    holder = hold_lock(path)
    try:
        with pytest.raises(SearchError) as refused:
            open_study(spec, spec["parallel"], plan_of(CHARGPT))
        assert str(refused.value).startswith(
            f"the Optuna storage {spec['storage']} is locked by another process ("
        )
        assert "after 0.1 s" in str(refused.value) and "close it" in str(refused.value)
    finally:
        release(holder)
    study = open_study(spec, spec["parallel"], plan_of(CHARGPT))
    holder = hold_lock(path)
    try:
        with (
            pytest.raises(SearchError, match="is locked by another process"),
            storage_errors(spec["storage"]),
        ):
            start_trial(study, spec, 2, 2)
        assert path.read_bytes() == held
    finally:
        release(holder)
    assert outcome(drive(spec)) == uncut


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        (
            "sqlite:////proc/nope/x.db",
            "the Optuna storage sqlite:////proc/nope/x.db cannot be made: its folder "
            "/proc/nope cannot be created (No such file or directory); set search.storage",
        ),
        ("folder", "cannot be opened (unable to open database file): "),
        ("text", "is damaged (file is not a database): restore the file from a copy"),
        (
            "postgresql://search:secret@localhost/optuna",
            "the Optuna storage postgresql://search:***@localhost/optuna needs the database "
            "driver psycopg2, which is not installed: pip install psycopg2-binary",
        ),
        ("nosuchdb://host/optuna", "search.storage: nosuchdb://host/optuna is not a database"),
    ],
)
def test_a_storage_that_cannot_be_opened_is_one_line(
    tmp_path: Path, storage: str, message: str
) -> None:
    """A folder that cannot be made, a folder or another file in the storage's place, a
    database driver missing (the URL's password not shown), a URL of no known database.
    """
    if storage == "folder":
        (tmp_path / "study.db").mkdir()
    if storage == "text":
        (tmp_path / "study.db").write_text("not a database\n" * 500)
    if storage.startswith("postgresql") and importlib.util.find_spec("psycopg2"):
        pytest.skip("psycopg2 is installed here")
    if "://" not in storage:
        storage = f"sqlite:///{tmp_path / 'study.db'}"
    before = files_under(tmp_path)
    with pytest.raises(SearchError) as refused:
        open_study({**SPEC, "storage": storage}, 2, plan_of(CHARGPT))
    assert message in str(refused.value)
    assert "\n" not in str(refused.value) and not DESTRUCTIVE.search(str(refused.value))
    assert files_under(tmp_path) == before


def test_a_results_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    """The study's folder under results/, where its lock lives: a file in the way."""
    (tmp_path / "results").write_text("a file, not a folder\n")
    folder = tmp_path / "results" / "search" / "search"
    refused = pytest.raises(SearchError, match=re.escape("search cannot be made (Not a direc"))
    with refused, search.search_lock(folder):
        pass


def test_a_storage_that_fails_while_training_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pruning thread's storage call that fails while Snakemake runs: kept, not a
    thread's traceback, and raised once Snakemake has ended, as one line.
    """
    monkeypatch.chdir(tmp_path)
    text = tmp_path / "study.db"
    text.write_text("not a database\n" * 500)
    failed = threading.Event()

    def check() -> None:  # the storage call of a pruning check, on a damaged file
        failed.set()
        with contextlib.closing(sqlite3.connect(text)) as connection:
            connection.execute("SELECT * FROM trials")

    def run_child(command: list[str]) -> tuple[int, str | None]:  # Snakemake meanwhile
        assert failed.wait(HANG)
        return 0, None

    plan = plan_of(CHARGPT)
    pruning = search.Pruning(None, SPEC, [1], 0, plan, lambda: Shown(plan.objective), lambda: None)
    monkeypatch.setattr(pruning, "check", check)
    monkeypatch.setattr(search, "POLL_S", 0.0)
    monkeypatch.setattr(search.supervisor, "run_child", run_child)
    url = f"sqlite:///{text}"
    with (
        pytest.raises(SearchError, match=re.escape("is damaged (file is not a database)")),
        storage_errors(url),
    ):
        search.run_workflow(["snakemake"], pruning)
    assert capsys.readouterr().err == ""


def test_a_search_without_optuna_is_one_line(tmp_path: Path) -> None:
    """Without the packages of requirements-search.txt (optuna cannot be imported): one
    line that says what to install, exit code 1, as a missing MLflow is.
    """
    blocked = (
        "import runpy, sys\n"
        "sys.modules['optuna'] = None  # import optuna fails\n"
        f"sys.path.insert(0, {str(REPO / 'workflow' / 'scripts')!r})\n"
        f"sys.argv = [{str(REPO / 'workflow' / 'scripts' / 'search.py')!r}]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocked], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("search.py: error: the search needs the optuna package (")
    assert result.stderr.endswith(": pip install -r requirements-search.txt\n")
    assert list(tmp_path.iterdir()) == [], "nothing was made"


# -- on the real data --------------------------------------------------------------------------

# 8 trials of the tiny model, 2 at a time: one epoch of 118 steps (256 windows a batch), a
# validation and a checkpoint every 40 steps; n_head 3 does not divide d_model 32 (a trial
# refused), the median rule prunes after the first 3 complete trials. Drawn with the study's
# seed: 6 trials complete, 1 refused (trial 2), 1 pruned (trial 6).
CHECKPOINT_EVERY = 40
E2E_SEARCH = {
    "space": {
        "train.lr": {"low": 1.0e-4, "high": 3.0e-2, "log": True},
        "model.dropout": {"low": 0.0, "high": 0.1},
        "model.n_layer": {"low": 1, "high": 2, "int": True},
        "model.n_head": {"choices": [2, 3]},
    },
    "trials": 8,
    "parallel": 2,
    "startup_trials": 3,
    "pruning": True,
    "overrides": {
        "train.batch_size": 256,
        "train.eval_every_steps": CHECKPOINT_EVERY,
        "train.checkpoint_every_steps": CHECKPOINT_EVERY,
    },
}
# 6 trials of the digits plan, 2 at a time, 2 epochs each (a validation and a checkpoint
# after each), TPE after the first 3: its objective maximised. Batches of 8 images: an
# epoch of the CNN lasts about a second on a 2-core CPU, long enough to be cut.
DIGITS_SEARCH = {
    "space": {
        "model.arch": {"choices": ["cnn", "linear"]},
        "train.lr": {"low": 1.0e-3, "high": 5.0e-3, "log": True},
    },
    "trials": 6,
    "parallel": 2,
    "startup_trials": 3,
    "overrides": {"train.batch_size": 8},
}
SEARCH_COMMAND = [sys.executable, "workflow/scripts/search.py", "--cores", "2"]
LOG = "search.out"


def search_repo(destination: Path) -> Path:
    return tiny_repo(destination, runs={}, seeds=[1], search=E2E_SEARCH)


def digits_search_repo(destination: Path) -> Path:
    settings = digits_settings(runs={}, seeds=[1], epochs=2, search=DIGITS_SEARCH)
    repo = copy_repo(destination)
    configure(repo, **settings)
    return repo


def start_search(repo: Path) -> subprocess.Popen[bytes]:
    return start_as_from_a_terminal(SEARCH_COMMAND, repo, LOG)


def load(repo: Path) -> optuna.Study:
    return optuna.load_study(
        study_name="search", storage=f"sqlite:///{repo / 'results/search/search.db'}"
    )


def record(study: optuna.Study) -> list[tuple[Any, ...]]:
    """What a search ends with: each trial's state, values, objective and notes."""
    return [
        (t.number, t.state, t.params, t.value, t.user_attrs, t.intermediate_values)
        for t in study.get_trials()
    ]


def run_search(repo: Path) -> Path:
    """The search in `repo`, uninterrupted; its output in repo/LOG."""
    result = subprocess.run(
        SEARCH_COMMAND, cwd=repo, env=workflow_env(), capture_output=True, text=True, timeout=HANG
    )
    (repo / LOG).write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    return repo


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted 8-trial search (its wall time: this fixture's setup)."""
    return run_search(search_repo(tmp_path_factory.mktemp("search") / "repo"))


@pytest.fixture(scope="module")
def searched_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted 6-trial search of the digits plan (its wall time: this fixture's
    setup).
    """
    return run_search(digits_search_repo(tmp_path_factory.mktemp("digits") / "repo"))


@pytest.mark.slow
def test_a_search_runs_every_trial_and_records_each_state(searched: Path) -> None:
    trials = load(searched).get_trials()
    assert [t.number for t in trials] == list(range(E2E_SEARCH["trials"]))
    states = {state: [t for t in trials if t.state == state] for state in TrialState}
    pruned, failed = states[TrialState.PRUNED], states[TrialState.FAIL]
    assert pruned and failed and len(states[TrialState.COMPLETE]) >= 3
    for trial in failed:
        assert trial.params["model.n_head"] == 3
        assert trial.user_attrs["fail_reason"] == (
            "config key 'model.d_model' must be divisible by model.n_head"
        )
        assert not (searched / "results" / trial.user_attrs["run"]).exists(), "never trained"
    complete = states[TrialState.COMPLETE][0].user_attrs["run"]
    steps = json.loads((searched / "results" / complete / "seed1/train_summary.json").read_text())
    for trial in pruned:
        step = trial.user_attrs["pruned_at_step"]
        assert step in trial.intermediate_values and step < steps["steps"], "mid-epoch"
        folder = searched / "results" / trial.user_attrs["run"] / "seed1"
        assert not (folder / "train_summary.json").exists(), "its training was stopped"
    for trial in states[TrialState.COMPLETE]:
        metrics = searched / "results" / trial.user_attrs["run"] / "seed1" / "metrics.json"
        assert trial.value == json.loads(metrics.read_text())["bits_per_char"]
    runs = json.loads((searched / "results/search/search/runs.json").read_text())
    assert list(runs) == [t.user_attrs["run"] for t in states[TrialState.COMPLETE]]
    summary = (searched / "results/search/search/summary.md").read_text()
    best = min(states[TrialState.COMPLETE], key=lambda t: t.value)
    assert f"Trial {best.number}, run `{best.user_attrs['run']}`" in summary
    assert f"pruned at step {pruned[0].user_attrs['pruned_at_step']}" in summary
    assert (searched / "results/search/search/search.png").stat().st_size > 0


@pytest.mark.slow
def test_a_search_of_the_digits_plan_maximises_its_objective(searched_digits: Path) -> None:
    """Every trial complete, told the mean of its seeds' val_accuracy; the study maximises,
    and the summary names the trial of the highest value, shown by the figure's label.
    """
    study = load(searched_digits)
    assert study.direction == StudyDirection.MAXIMIZE
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * DIGITS_SEARCH["trials"]
    assert {t.params["model.arch"] for t in trials} == {"cnn", "linear"}
    for trial in trials:
        metrics = searched_digits / "results" / trial.user_attrs["run"] / "seed1/metrics.json"
        figures = json.loads(metrics.read_text())["figures"]
        (objective,) = [f for f in figures if f["name"] == "val_accuracy"]
        assert trial.value == objective["value"]
        assert 0.0 <= trial.value <= 1.0
    best = max(trials, key=lambda t: t.value)  # the first of equals, as the summary's
    assert study.best_value == best.value
    summary = (searched_digits / "results/search/search/summary.md").read_text()
    assert f"Trial {best.number}, run `{best.user_attrs['run']}`" in summary
    assert f"**{best.value:.4f} {objective['label']}**" in summary
    assert "maximised" in summary and "bits" not in summary
    log = (searched_digits / LOG).read_text()
    assert f"complete, {best.value:.4f} {objective['label']}" in log
    assert (searched_digits / "results/search/search/search.png").stat().st_size > 0


@pytest.mark.slow
def test_the_workflow_summary_covers_the_complete_trials(searched: Path) -> None:
    snakemake(searched, "--cores", "2", "results/summary.md")
    summary = (searched / "results" / "summary.md").read_text()
    for trial in load(searched).get_trials():
        shown = f"| {trial.user_attrs['run']} " in summary
        assert shown == (trial.state == TrialState.COMPLETE), trial.user_attrs["run"]


@dataclass(frozen=True)
class Searched:
    """A plan's uninterrupted search, and what its training shows of its checkpoints."""

    plan: str  # the plan folder
    fixture: str  # the fixture of its uninterrupted search
    make_repo: Callable[[Path], Path]  # a copy configured for the same search
    # The work folder of a training → whether it trained past its first checkpoint.
    past_checkpoint: Callable[[Path], bool]
    # A training's train.log and train_summary.json → the step its log says it resumed at.
    resumed_at: Callable[[str, dict[str, Any]], int]
    first_checkpoint: Callable[[dict[str, Any]], int]  # train_summary.json → its step
    # Whether a trial trains long enough past its first checkpoint to be cut there.
    cuttable: Callable[[FrozenTrial], bool] = lambda _: True


def resumed_at_step(log: str, _: dict[str, Any]) -> int:
    return int(re.search(r"resumed from \S+ at step (\d+)", log)[1])


def resumed_at_epoch(log: str, summary: dict[str, Any]) -> int:
    return int(re.search(r"resumed from \S+ at epoch (\d+)", log)[1]) * summary["steps_per_epoch"]


SEARCHES = [
    Searched(
        plan=CHARGPT,
        fixture="searched",
        make_repo=search_repo,
        past_checkpoint=lambda work: (
            logged_steps(work / "train_log.jsonl") >= CHECKPOINT_EVERY + 10
        ),
        resumed_at=resumed_at_step,
        first_checkpoint=lambda _: CHECKPOINT_EVERY,
    ),
    # Training logs an epoch at its end, then writes its checkpoint: past it, the next
    # epoch trains, for a second with the CNN (the linear model's lasts a tenth of that).
    Searched(
        plan=DIGITS,
        fixture="searched_digits",
        make_repo=digits_search_repo,
        past_checkpoint=lambda work: (work / "last.pt").is_file(),
        resumed_at=resumed_at_epoch,
        first_checkpoint=lambda summary: summary["steps_per_epoch"],
        cuttable=lambda trial: trial.params["model.arch"] == "cnn",
    ),
]
BY_PLAN = pytest.mark.parametrize("case", SEARCHES, ids=[case.plan for case in SEARCHES])


@pytest.mark.slow
@BY_PLAN
def test_a_finished_search_run_again_trains_nothing(
    case: Searched, request: pytest.FixtureRequest
) -> None:
    searched_repo = request.getfixturevalue(case.fixture)
    before = record(load(searched_repo))
    result = subprocess.run(
        SEARCH_COMMAND, cwd=searched_repo, env=workflow_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "snakemake on" not in result.stdout
    assert record(load(searched_repo)) == before


def snakemake_of(search: subprocess.Popen[bytes]) -> psutil.Process:
    (process,) = [
        p for p in psutil.Process(search.pid).children() if p.cmdline()[1:3] == ["-m", "snakemake"]
    ]
    return process


def trained(repo: Path) -> dict[str, bytes]:
    """The training record of every run that finished training, by run."""
    return {
        path.parent.parent.name: path.read_bytes()
        for path in (repo / "results").glob("search_*/seed1/train_summary.json")
    }


def stop_once_training(
    repo: Path, run: str, kill: Any, case: Searched
) -> tuple[int, dict[str, bytes], psutil.Process]:
    """Start the search; once `run` has trained past its first checkpoint, call
    kill(search, training); return the search's exit code, what had finished training by
    then, and the training.
    """
    search = start_search(repo)
    work = repo / "results" / run / "seed1" / plan_of(case.plan).work_log.parent
    deadline = time.monotonic() + HANG
    try:
        while True:
            assert search.poll() is None, (repo / LOG).read_text()
            assert time.monotonic() < deadline, f"{run} did not train in {HANG} s"
            training = trainer_of(search, run, case.plan)
            if training is not None and case.past_checkpoint(work):
                done = trained(repo)
                kill(search, training)
                break
            time.sleep(0.05)
        code = search.wait(timeout=HANG)
        _, alive = psutil.wait_procs([training], timeout=60)
        assert alive == [], "training outlived the search"
        return code, done, training
    finally:
        stop_tree(search.pid)


@pytest.mark.slow
@BY_PLAN
def test_a_search_killed_three_times_ends_as_the_uninterrupted_one(
    case: Searched, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """SIGKILL of the search command, of its Snakemake, then of a training, each once a
    complete trial (of the uninterrupted search) of a later batch has trained past its
    first checkpoint; the same command each time after.
    """
    searched_repo = request.getfixturevalue(case.fixture)
    reference = load(searched_repo).get_trials()
    complete = [t for t in reference if t.state == TrialState.COMPLETE]
    runs = [t.user_attrs["run"] for t in complete if case.cuttable(t)]
    assert len(runs) >= 3, f"{runs}: too few trials to cut"
    cut = [runs[0], runs[len(runs) // 2], runs[-1]]
    repo = case.make_repo(tmp_path / "repo")
    kills = [
        lambda search, _: search.kill(),
        lambda search, _: snakemake_of(search).kill(),
        lambda _, training: training.kill(),
    ]
    finished: dict[str, bytes] = {}
    for run, kill, expected in zip(
        cut, kills, (-signal.SIGKILL, 128 + signal.SIGKILL, 0), strict=True
    ):
        code, done, _ = stop_once_training(repo, run, kill, case)
        assert code == expected, (repo / LOG).read_text()
        finished.update(done)
    assert record(load(repo)) == record(load(searched_repo))
    now = trained(repo)
    for run, summary in finished.items():
        assert now[run] == summary, f"{run} trained again"
    for run in cut:
        logs = repo / "results" / run / "seed1" / "logs"
        log = (logs / f"{plan_of(case.plan).trainer}.log").read_text()
        summary = json.loads(now[run])
        step = case.resumed_at(log, summary)
        assert step >= case.first_checkpoint(summary)
        assert summary["resumed_from_step"] == step


@pytest.mark.slow
def test_the_workflow_refuses_a_bad_search_before_any_job(tmp_path: Path) -> None:
    bad = {**E2E_SEARCH, "space": {"train.lr": {"low": 1e-2, "high": 1e-4}}}
    repo = tiny_repo(tmp_path / "repo", search=bad)
    result = snakemake(repo, "-n", check=False)
    assert result.returncode != 0
    assert "search.space.train.lr: low must be below high" in result.stdout + result.stderr
