"""Run the `search:` of config/config.yaml: an Optuna study whose trials are runs of the
workflow, one command that a kill at any moment does not set back.

    python workflow/scripts/search.py [--cores N] [snakemake options]

from the repository root. In batches of `parallel` trials: ask the batch (search_study.py),
set aside a trial whose settings the plan refuses (failed, with the reason), write the
runs of the complete trials and of the batch to results/search/<study>/runs.json (the
workflow's configured runs read it), run `snakemake --keep-going` on the batch's reports,
then tell each trial its objective (search_trials.py), or why it failed. With pruning on,
a thread meanwhile reports each trial's validation curve from its training log and stops
the training of a trial that the median rule prunes. Last, results/search/<study>/
summary.md and search.png (search_summary.py). What the objective is, in which direction it
improves and which stage trains, the search reads of the declaration of the plan that
config/config.yaml names (`plan:`), once.

Run again after any stop, the same command continues: the study is read back from its
storage, the batch that was cut is finished (Snakemake finds what is up to date, training
resumes from its checkpoint) and the rest asked as before. Snakemake runs as a child that
dies with this process, in a process group that dies with it (supervisor.py); a Snakemake
killed outright leaves its lock, which the next one lifts when no other Snakemake works
here (workflow/rules/common.smk).

The study's storage (search_study.py: open_study) is checked before anything is written to
it; one that is damaged, locked by another process for longer than SQLITE_WAIT_S, cannot be
made or reached, or lacks its driver, at its opening or at any later call, ends the search
with one line that names it and the fix (restore it from a copy, close the other process,
install the driver), having written nothing to a damaged one: run the same command again
once it is fixed, and the search goes on with every trial it had.

Exit codes: 0 when every trial is finished; 2 for a bad spec or command line (one line,
before any job); 1 when the search cannot go on (one line: Optuna not installed, a study
made by another spec, a storage that fails, a Snakemake that failed before the trials
ran); 128 + N after signal N, or when Snakemake was ended by signal N.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:  # the search's own packages (requirements-search.txt), which the workflow lacks
    import optuna  # noqa: F401
except ImportError as missing:
    raise SystemExit(
        f"{Path(__file__).name}: error: the search needs the optuna package ({missing}): "
        "pip install -r requirements-search.txt"
    ) from None
import jsonschema
import yaml
from harness.io import write_text
from optuna.trial import FrozenTrial, TrialState

import supervisor
from config_checks import file_problem
from resolve import PlanError, declared_plan
from search_spec import (
    RESULTS,
    RUNS_FILE,
    SearchError,
    SearchPlan,
    Shown,
    check_spec,
    storage_url,
    study_dir,
    trial_name,
    trial_run,
    with_defaults,
)
from search_study import (
    RUN_ATTR,
    batch_numbers,
    live,
    open_study,
    prune_here,
    start_trial,
    storage_errors,
)
from search_summary import PRUNED_ATTR, REASON_ATTR, SEEDS_ATTR, write_summary
from search_trials import (
    check_space_values,
    complete,
    failure_reason,
    ran_since,
    refused_runs,
    seed_objectives,
    shown_objective,
    stop_training,
    targets,
    validation_curve,
)
from sweep import sweep_runs

PROG = Path(__file__).name
CONFIG = Path("config/config.yaml")
SCHEMA = Path("workflow/schemas/config.schema.yaml")
PROFILE = Path("profiles/default")
POLL_S = 1.0  # how often the pruning thread reads the training logs
# Snakemake options that would give its jobs another configuration than the search reads.
OWN_CONFIG = ("--config", "--configfile", "--configfiles")


class Stopped(Exception):
    """The search stopped before its end (a signal); `code` is its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def say(message: str) -> None:
    print(f"{PROG}: {message}", flush=True)


# -- the command line and the configuration ----------------------------------------------


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run the search of config/config.yaml; run it again to resume.",
        epilog="Other options go to snakemake (e.g. --resources gpu=2).",
        allow_abbrev=False,
    )
    parser.add_argument("--cores", default="all", help="snakemake --cores (default: all)")
    args, extra = parser.parse_known_args(argv)
    given = [arg for arg in extra if arg.split("=")[0] in OWN_CONFIG]
    if given:
        parser.error(f"{given[0].split('=')[0]}: the search reads {CONFIG}; set it there")
    return args, extra


def load_config() -> dict[str, Any]:
    """config/config.yaml, checked against the schema; a bad search spec is one line."""
    if not (CONFIG.is_file() and SCHEMA.is_file()):
        raise SearchError(f"no {CONFIG}: run the search from the repository root")
    if problem := file_problem(str(CONFIG)):  # a YAML error: its line and column
        raise SearchError(problem)
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    error = jsonschema.exceptions.best_match(
        jsonschema.validators.validator_for(schema)(schema).iter_errors(config)
    )
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path) or "the top level"
        raise SearchError(f"{CONFIG}: {where}: {error.message}")
    if not config.get("search"):
        raise SearchError(f"{CONFIG} has no `search:`; give one (docs/search.md)")
    check_spec(config["search"])
    return config


def read_plan(config: dict[str, Any]) -> SearchPlan:
    """What the search reads of the declaration of the plan that config/config.yaml names;
    a plan that cannot be loaded is one line.
    """
    try:
        return SearchPlan.of(config["plan"], declared_plan(config["plan"]))
    except PlanError as error:
        raise SearchError(str(error).removeprefix("error: ")) from None


def check_names(config: dict[str, Any], search: dict[str, Any]) -> None:
    """No listed or swept run may be named as a trial's run."""
    study = with_defaults(search)["study"]
    others = [*config["runs"], *sweep_runs(config.get("sweep"))]
    taken = [name for name in others if name.removeprefix(f"{study}_").isdigit()]
    if taken:
        raise SearchError(
            f"runs: {taken[0]} is named as a trial's run; rename it or set search.study"
        )


def gpu_slots(extra: list[str]) -> int:
    """The GPU jobs that Snakemake runs at once: `--resources gpu=N` among its options,
    else the workflow profile's `resources` (profiles/default, or --workflow-profile), else
    the profile's job limit (a cluster's), else 1.
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--resources", nargs="*", default=None)
    parser.add_argument("--workflow-profile", type=Path, default=PROFILE)
    options, _ = parser.parse_known_args(extra)
    profile_file = options.workflow_profile / "config.yaml"
    profile = yaml.safe_load(profile_file.read_text()) if profile_file.is_file() else {}
    resources = options.resources if options.resources is not None else profile.get("resources")
    for item in resources or []:
        name, _, value = item.partition("=")
        if name.strip() == "gpu":
            return int(value)
    return int(profile.get("jobs", 1))


def snakemake_command(cores: str, extra: list[str], parallel: int, wanted: list[str]) -> list:
    """snakemake on the batch's targets (first: an option such as --resources takes every
    word after it), with `parallel` GPU slots unless the options say otherwise.
    """
    given = any(arg.split("=")[0] == "--resources" for arg in extra)
    resources = [] if given else ["--resources", f"gpu={parallel}"]
    return [
        sys.executable,
        "-m",
        "snakemake",
        *wanted,
        "--cores",
        cores,
        "--keep-going",
        *resources,
        *extra,
    ]


# -- Snakemake as a child ------------------------------------------------------------------


def run_workflow(command: list[str], pruning: Pruning | None) -> int:
    """Run Snakemake (dying with this process), with the pruning thread meanwhile."""
    done = threading.Event()
    watcher = threading.Thread(target=pruning.watch, args=(done,)) if pruning else None
    if watcher:
        watcher.start()
    try:
        code, error = supervisor.run_child(command)
    finally:
        done.set()
        if watcher:
            watcher.join()
    if error is not None:
        raise Stopped(f"{error}; run the search again to resume", code)
    if pruning and pruning.failure:
        raise pruning.failure  # the storage's, say: main says it in one line
    return code


@contextlib.contextmanager
def search_lock(folder: Path) -> Iterator[None]:
    """One search of a study at a time (the kernel frees the lock however this ends)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SearchError(
            f"{folder} cannot be made ({error.strerror}): make results/ writable"
        ) from None
    with (folder / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SearchError(f"another search of {folder.name} runs in this checkout") from None
        yield


# -- pruning -------------------------------------------------------------------------------


class Pruning:
    """Reports the validation curve of each running trial of a batch to the study, step by
    step, and prunes (and stops) the trial where the median rule says so.
    """

    def __init__(
        self,
        study: Any,
        search: dict[str, Any],
        seeds: list[int],
        start: int,
        plan: SearchPlan,
        shown: Callable[[], Shown],
        on_prune: Callable[[], None],
    ) -> None:
        self.study, self.search, self.seeds, self.start = study, search, seeds, start
        self.plan, self.shown = plan, shown  # the plan; how its objective is shown now
        self.on_prune = on_prune  # called once a trial is pruned (it leaves the runs)
        self.running: dict[int, str] = {}  # trial number -> run
        self.pruned: dict[int, str] = {}
        self.judged: dict[int, int] = {}  # the last step judged, by trial
        self.failure: Exception | None = None  # what stopped the thread (watch)

    def check(self) -> None:
        """Judge each new step of each running trial; stop what was pruned."""
        for number, run in list(self.running.items()):
            for step, value in validation_curve(run, self.seeds, self.plan).items():
                if step > self.judged.get(number, -1) and self.prunes(number, step, value):
                    self.pruned[number] = self.running.pop(number)
                    shown = self.shown().value(value)
                    say(f"trial {number} ({run}): pruned at step {step} ({shown})")
                    self.on_prune()
                    break
        for run in self.pruned.values():
            stop_training(run, self.plan)  # again after Snakemake's retry of the job

    def prunes(self, number: int, step: int, value: float) -> bool:
        """Report the value at `step` (once) and prune the trial there if the rule says so."""
        trial = self.study.get_trials(deepcopy=False)[number]
        if step not in trial.intermediate_values:
            live(self.study, trial).report(value, step)
            trial = self.study.get_trials(deepcopy=False)[number]
        self.judged[number] = step
        if not prune_here(self.study, self.search, trial, step, self.start):
            return False
        live(self.study, trial).set_user_attr(PRUNED_ATTR, step)
        self.study.tell(number, state=TrialState.PRUNED)
        return True

    def watch(self, done: threading.Event) -> None:
        """Check every POLL_S until `done`; what fails (the storage, say) stops the
        watching and is kept for the search to raise once Snakemake has ended.
        """
        try:
            while not done.wait(POLL_S):
                self.check()
        except Exception as error:  # raised again in the main thread: run_workflow
            self.failure = error


# -- the search ----------------------------------------------------------------------------


@dataclass
class Search:
    """A search under way: its study, the configuration, the plan, and how Snakemake runs."""

    study: Any
    config: dict[str, Any]
    spec: dict[str, Any]  # with its defaults
    plan: SearchPlan
    parallel: int
    cores: str
    extra: list[str]  # options for snakemake
    known: Shown | None = None  # how the objective is shown, once a trial is complete

    @property
    def seeds(self) -> list[int]:
        return self.config["seeds"]

    def shown(self) -> Shown:
        """How messages and the summary show the objective: as the first complete trial's
        metrics.json has it, else by the figure's name.
        """
        if self.known is None:
            trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if not trials:
                return Shown(self.plan.objective)
            run = trials[0].user_attrs[RUN_ATTR]
            self.known = shown_objective(run, self.seeds, self.plan)
        return self.known

    def write_runs(self, batch: list[FrozenTrial]) -> None:
        """The runs of the complete trials and of `batch`, for the workflow (atomically)."""
        trials = self.study.get_trials(deepcopy=False)
        shown = [t for t in trials if t.state == TrialState.COMPLETE] + batch
        runs = {
            t.user_attrs[RUN_ATTR]: trial_run(self.spec, t.params)
            for t in sorted(shown, key=lambda t: t.number)
        }
        write_text(study_dir(self.spec) / RUNS_FILE, json.dumps(runs, indent=2) + "\n")

    def fail(self, trial: FrozenTrial, reason: str) -> None:
        live(self.study, trial).set_user_attr(REASON_ATTR, reason)
        self.study.tell(trial.number, state=TrialState.FAIL)
        say(f"trial {trial.number} ({trial.user_attrs[RUN_ATTR]}): failed: {reason}")

    def finish(self, trial: FrozenTrial, since: float, code: int) -> None:
        """Tell a trial that Snakemake ran its objective, or why it failed."""
        run = trial.user_attrs[RUN_ATTR]
        if not complete(run, self.seeds):
            if not ran_since(run, self.seeds, since, self.plan):
                raise SearchError(
                    f"snakemake ended (exit code {code}) before trial {trial.number} ({run}) "
                    "ran: see its output above; run the search again to resume"
                )
            self.fail(trial, failure_reason(run, self.seeds, self.plan))
            return
        values = seed_objectives(run, self.seeds, self.plan)
        shown = shown_objective(run, self.seeds, self.plan)
        if not all(math.isfinite(value) for value in values.values()):
            self.fail(trial, f"{shown.label} is not finite: {values}")
            return
        live(self.study, trial).set_user_attr(SEEDS_ATTR, {str(s): v for s, v in values.items()})
        objective = statistics.mean(values.values())
        self.study.tell(trial.number, objective)
        say(f"trial {trial.number} ({run}): complete, {shown.value(objective)}")

    def start_batch(self, start: int) -> list[FrozenTrial]:
        """The batch's trials, asked where new; those still to run."""
        for number in batch_numbers(start, self.parallel, self.spec["trials"]):
            folder = RESULTS / trial_name(self.spec["study"], number)
            if number == len(self.study.trials) and folder.exists():
                raise SearchError(
                    f"{folder} exists, but the study has no trial {number}: remove it (a run "
                    "of an earlier study?) or name a new study (search.study)"
                )
            start_trial(self.study, self.spec, number, start)
        trials = self.study.get_trials(deepcopy=False)[start : start + self.parallel]
        return [t for t in trials if t.state == TrialState.RUNNING]

    def run_batch(self, start: int) -> None:
        """Ask, check, run and tell the batch that begins at trial `start`."""
        batch = self.start_batch(start)
        runs = {t.user_attrs[RUN_ATTR]: trial_run(self.spec, t.params) for t in batch}
        refused = refused_runs(self.config, runs) if batch else {}
        for trial in batch:
            if trial.user_attrs[RUN_ATTR] in refused:
                self.fail(trial, refused[trial.user_attrs[RUN_ATTR]])
        batch = [t for t in batch if t.user_attrs[RUN_ATTR] not in refused]
        pruning = None
        if self.spec["pruning"] and batch:
            pruning = Pruning(
                self.study,
                self.spec,
                self.seeds,
                start,
                self.plan,
                self.shown,
                lambda: self.write_runs([t for t in batch if t.number in pruning.running]),
            )
            pruning.running = {t.number: t.user_attrs[RUN_ATTR] for t in batch}
            pruning.check()  # a trial cut short past its pruning step is pruned now
            batch = [t for t in batch if t.number in pruning.running]
        if not batch:
            return
        self.write_runs(batch)
        wanted = [path for t in batch for path in targets(t.user_attrs[RUN_ATTR], self.seeds)]
        say(f"trials {', '.join(str(t.number) for t in batch)}: snakemake on {len(wanted)} targets")
        since = time.time()
        command = snakemake_command(self.cores, self.extra, self.parallel, wanted)
        code = run_workflow(command, pruning)
        if code > 128:
            raise Stopped(f"snakemake was ended by signal {code - 128}; run the search again", code)
        if pruning:
            pruning.check()  # the steps logged since the thread last looked
        for trial in batch:
            if not (pruning and trial.number in pruning.pruned):
                self.finish(trial, since, code)
        self.write_runs([])

    def run(self) -> None:
        folder = study_dir(self.spec)
        for start in range(0, self.spec["trials"], self.parallel):
            self.run_batch(start)
        self.write_runs([])
        trials = self.study.get_trials()
        write_summary(
            folder,
            trials,
            self.spec,
            storage_url(self.spec),
            self.parallel,
            self.plan,
            self.shown(),
        )
        say(f"done: {folder / 'summary.md'}")


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    try:
        config = load_config()
        spec = with_defaults(config["search"])
        check_names(config, spec)
        plan = read_plan(config)
        check_space_values(config, spec)
        parallel = spec["parallel"] or gpu_slots(extra)
    except SearchError as error:
        supervisor.print_error(PROG, str(error))
        return 2
    try:
        with search_lock(study_dir(spec)), storage_errors(storage_url(spec)):
            study = open_study(spec, parallel, plan)
            Search(study, config, spec, plan, parallel, args.cores, extra).run()
    except SearchError as error:
        supervisor.print_error(PROG, str(error))
        return 1
    except Stopped as stop:
        supervisor.print_error(PROG, str(stop))
        return stop.code
    except KeyboardInterrupt:
        supervisor.print_error(PROG, "interrupted; run the search again to resume")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
