"""A search's trial as a run of the workflow, read from its files: whether the plan
accepts its settings, its objective, why it failed, its validation curve while it trains,
and its training processes.

The objective is the plan's (SearchPlan): its figure among the `figures` of each seed's
metrics.json (harness/contract.py), the mean over the run's seeds, minimised or maximised
as the plan declares; while the plan's training stage runs, its log's validation records
carry the figure under its name.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import statistics
import tempfile
from pathlib import Path
from typing import Any

import psutil

from resolve import read_runs, run_spec
from search_spec import RESULTS, SearchError, SearchPlan, Shown, trial_run

# The last file of a (run, seed): a trial is complete when each of its seeds has it.
DONE = "ml_res.md"
# run.py's `error: ...`, a wrapper's `gpu_monitor.py: error: ...`, a traceback's last line.
ERROR_LINE = re.compile(r"^(?:\S+: )?error: |^\w+(?:Error|Exception): ")
# What the project says of a key that it lacks or of a value of the wrong type.
SPEC_ERRORS = ("unknown config key", "must be of type", "must be a finite number", "a mapping")


def seed_dir(run: str, seed: int) -> Path:
    return RESULTS / run / f"seed{seed}"


def targets(run: str, seeds: list[int]) -> list[str]:
    """What Snakemake builds for a trial: every seed's report, and so all before it."""
    return [str(seed_dir(run, seed) / DONE) for seed in seeds]


def complete(run: str, seeds: list[int]) -> bool:
    return all((seed_dir(run, seed) / DONE).is_file() for seed in seeds)


def objective_entry(run: str, seed: int, plan: SearchPlan) -> dict[str, Any]:
    """The objective's entry of the seed's metrics.json `figures`; the run is complete."""
    metrics = json.loads((seed_dir(run, seed) / plan.metrics).read_text(encoding="utf-8"))
    entries = [entry for entry in metrics["figures"] if entry["name"] == plan.objective]
    if not entries:
        raise SearchError(
            f"{seed_dir(run, seed) / plan.metrics} has no figure {plan.objective!r}, the "
            "plan's objective"
        )
    return entries[0]


def seed_objectives(run: str, seeds: list[int], plan: SearchPlan) -> dict[int, float]:
    """Each seed's value of the plan's objective (metrics.json); the run is complete."""
    return {seed: objective_entry(run, seed, plan)["value"] for seed in seeds}


def shown_objective(run: str, seeds: list[int], plan: SearchPlan) -> Shown:
    """How the objective is shown, as the complete run's first seed's metrics.json has it."""
    entry = objective_entry(run, seeds[0], plan)
    return Shown(entry["label"], entry["unit"], entry["format"])


def ran_since(run: str, seeds: list[int], since: float, plan: SearchPlan) -> bool:
    """Whether a job of the run wrote its log at or after `since` (a time.time())."""
    logs = (seed_dir(run, seed) / "logs" / f"{job}.log" for seed in seeds for job in plan.jobs)
    return any(log.is_file() and log.stat().st_mtime >= since for log in logs)


def failure_reason(run: str, seeds: list[int], plan: SearchPlan) -> str:
    """Why the run did not complete: the first error line of the first job log that has
    one, with its stage and seed.
    """
    for seed in seeds:
        for stage in plan.jobs:
            log = seed_dir(run, seed) / "logs" / f"{stage}.log"
            lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
            errors = [line.strip() for line in lines if ERROR_LINE.search(line)]
            if errors:
                return f"{stage}, seed {seed}: {errors[0]}"
    return f"the workflow did not complete it: see {seed_dir(run, seeds[0]) / 'logs'}/"


def validation_records(folder: Path, plan: SearchPlan) -> dict[int, float]:
    """The objective's validation values by step from the seed's training log (the
    finished one, else the one being written; a line cut short by the writer is left for
    later), at the steps that training went on past: the last validation of a training is
    its end, which the objective judges, not the pruner.
    """
    for log in (folder / plan.train_log, folder / plan.work_log):
        try:
            lines = log.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            continue
        values, trained = {}, 0
        for line in lines:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("kind") == "val":
                    values[record["step"]] = record[plan.objective]
                elif record.get("kind") == "train":
                    trained = max(trained, record["step"])
        return {step: value for step, value in values.items() if step < trained}
    return {}


def validation_curve(run: str, seeds: list[int], plan: SearchPlan) -> dict[int, float]:
    """The mean over the seeds of the objective's validation values at each step that
    every seed has trained past, by step.
    """
    curves = [validation_records(seed_dir(run, seed), plan) for seed in seeds]
    steps = set.intersection(*(set(curve) for curve in curves))
    return {step: statistics.mean(curve[step] for curve in curves) for step in sorted(steps)}


def stop_training(run: str, plan: SearchPlan) -> int:
    """SIGTERM to the training processes of `run` below this process (the GPU monitor,
    which stops its training, and the training itself: each has the plan's
    `<folder>/run.py <training stage>` in its command line); how many were signalled.
    """
    script, inside = f"{plan.folder}/run.py", f"{RESULTS / run}/"
    signalled = 0
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            command = process.cmdline()
            training = script in command and plan.trainer in command
            if training and any(arg.startswith(inside) for arg in command):
                process.send_signal(signal.SIGTERM)
                signalled += 1
    return signalled


def refused_runs(config: dict[str, Any], runs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The runs whose settings the plan refuses (an impossible combination of values),
    with its reason. The plan's planner (resolve.read_runs) resolves them as the workflow
    does before any job, in a scratch folder; it stops at the first bad run, which is set
    aside before it resolves the rest again.
    """
    refused: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as scratch:
        bad_run = re.compile(rf"^error: {re.escape(scratch)}/([^/]+)/seed\d+: (.*)$")
        while len(refused) < len(runs):
            folders = {name: f"{scratch}/{name}" for name in runs if name not in refused}
            specs = [
                run_spec(config, f"{folder}/seed{seed}", runs[name], seed)
                for name, folder in folders.items()
                for seed in config["seeds"]
            ]
            result = read_runs(config["plan"], scratch, specs)
            if result.returncode == 0:
                break
            message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
            found = bad_run.match(message)
            if found is None or found[1] not in folders:
                raise SearchError(f"project config: {message or 'reads.py failed'}")
            refused[found[1]] = found[2]
    return refused


def check_space_values(config: dict[str, Any], search: dict[str, Any]) -> None:
    """Refuse a spec that names a key the project lacks or a value of the wrong type: its
    overrides alone, then each end of each range and each choice with them, resolved as a
    trial's run is, must not meet SPEC_ERRORS. Other refusals (an impossible combination,
    a value out of its range) are a trial's failure.
    """
    probes = {"probe0": ("search.overrides", trial_run(search, {}))}
    for key, space in sorted(search["space"].items()):
        values = space.get("choices", [space.get("low"), space.get("high")])
        for value in values:
            probes[f"probe{len(probes)}"] = (f"search.space.{key}", trial_run(search, {key: value}))
    refused = refused_runs(config, {name: run for name, (_, run) in probes.items()})
    for name, (where, _) in probes.items():
        reason = refused.get(name, "")
        if any(error in reason for error in SPEC_ERRORS):
            raise SearchError(f"{where}: {reason}")
