"""The `search:` section of config/config.yaml: an adaptive search whose trials are runs.

    search:
      study: search                  # trial runs are named search_0000, search_0001, ...
      space:                         # keys of the plan's config
        opt.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
        net.layers: {low: 1, high: 4, int: true}
        net.heads: {choices: [2, 4, 8]}
      trials: 20

The schema checks the section's shape; check_spec the rest. The search itself
(workflow/scripts/search.py) keeps the study in Optuna's storage and writes the runs of its
trials to RUNS_FILE, which trial_runs reads back for the workflow (common.smk's
configured_runs): a trial that is training, or finished and complete, is a run there; a
pruned or failed one is not. SearchPlan is what the search reads of the plan's declaration
(its objective and direction, its stages), Shown how it shows the objective.

Needs only the standard library and sweep.py: the workflow imports it before any job, where
Optuna need not be installed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep import SweepError, check_range

RESULTS = Path("results")
SEARCH_DIR = RESULTS / "search"
RUNS_FILE = "runs.json"
DEFAULTS: dict[str, Any] = {
    "study": "search",
    "storage": None,
    "parallel": None,
    "sampler_seed": 0,
    "startup_trials": 10,  # Optuna's TPE default
    "pruning": False,
    "overrides": {},
}
# The files that the search reads of a run, by their output names (harness/contract.py).
METRICS = "metrics"
TRAIN_LOG = "train_log"
REPORT_JOB = "report"  # the workflow's own last job of a (run, seed)


class SearchError(ValueError):
    """A search spec, study or runs file that cannot be used; the message says why."""


def with_defaults(search: dict[str, Any]) -> dict[str, Any]:
    """The spec (already checked against the schema) with every optional key filled in."""
    return {**DEFAULTS, **search}


def check_spec(search: dict[str, Any]) -> None:
    """What the schema cannot say: ranges that can be drawn from, no seed searched or set."""
    for part in ("space", "overrides"):
        if "seed" in search.get(part, {}):
            raise SearchError(
                f"search.{part}: 'seed' cannot be searched or set; list seeds under `seeds:`"
            )
    for key, space in search["space"].items():
        if "low" in space:
            try:
                check_range(f"search.space.{key}", space)
            except SweepError as error:
                raise SearchError(str(error)) from None
    shared = sorted(set(search["space"]) & set(search.get("overrides", {})))
    if shared:
        raise SearchError(
            f"search: {', '.join(shared)} in both space and overrides; keep each in one"
        )


def study_dir(search: dict[str, Any]) -> Path:
    """results/search/<study>/: the runs file, the summary and its plot."""
    return SEARCH_DIR / with_defaults(search)["study"]


def storage_url(search: dict[str, Any]) -> str:
    """Where the study lives: the spec's URL, else an SQLite file beside its folder."""
    spec = with_defaults(search)
    return spec["storage"] or f"sqlite:///{SEARCH_DIR / spec['study']}.db"


def trial_name(study: str, number: int) -> str:
    """The run of trial `number`: search_0007."""
    return f"{study}_{number:04d}"


def trial_run(search: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A trial's run settings: the search's own overrides, then the trial's values."""
    return {"overrides": {**with_defaults(search)["overrides"], **params}}


def trial_runs(search: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The runs of the search's trials as its runs file lists them; none before it ran."""
    if not search:
        return {}
    check_spec(search)
    path = study_dir(search) / RUNS_FILE
    if not path.is_file():
        return {}
    try:
        runs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SearchError(
            f"{path} cannot be read ({error}); run `python workflow/scripts/search.py` "
            "again to rewrite it"
        ) from None
    if not isinstance(runs, dict):
        raise SearchError(f"{path} is not a mapping of runs; run the search again")
    return runs


@dataclass(frozen=True)
class SearchPlan:
    """What the search reads of the plan's declaration (resolve.declared_plan): the
    objective and its direction, the jobs of a (run, seed), the training stage and where it
    logs its validations, the files of its outputs.
    """

    folder: str  # config["plan"]: the rules run `python <folder>/run.py <stage>`
    objective: str  # the figure's name in metrics.json and in the training log's val records
    direction: str  # "minimize" or "maximize"
    trainer: str  # the stage that trains
    jobs: tuple[str, ...]  # a (run, seed)'s jobs in order, each writing logs/<job>.log
    metrics: str  # METRICS, relative to a seed's folder
    train_log: str  # TRAIN_LOG, relative to a seed's folder

    @classmethod
    def of(cls, folder: str, declared: dict[str, Any]) -> SearchPlan:
        """From the plan folder and its declaration: the first stage prepares the data that
        runs share (under results/data/, no job of a run's), the rest are a run's jobs, then
        the workflow's report.
        """
        stages = declared["stages"]
        _, *jobs = stages
        outputs = {
            name: path for stage in stages.values() for name, path in stage["outputs"].items()
        }
        return cls(
            folder=folder,
            objective=declared["objective"]["figure"],
            direction=declared["objective"]["direction"],
            trainer=next(name for name, stage in stages.items() if stage["trains"]),
            jobs=(*jobs, REPORT_JOB),
            metrics=outputs[METRICS],
            train_log=outputs[TRAIN_LOG],
        )

    @property
    def work_log(self) -> Path:
        """The training log while its stage trains, relative to a seed's folder: in the
        stage's work folder (the train rule's --work-dir), <stage>.resume/.
        """
        return Path(f"{self.trainer}.resume") / Path(self.train_log).name

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def best(self, trials: list[Any]) -> Any:
        """The trial of the best value (each has one) in the plan's direction; the first
        of equals.
        """
        pick = max if self.maximize else min
        return pick(trials, key=lambda trial: trial.value)


@dataclass(frozen=True)
class Shown:
    """How messages and the summary show the plan's objective: its metrics.json entry's
    label, unit and format (harness/contract.py: Figure), as a complete trial wrote them;
    until one is complete, the figure's name alone.
    """

    label: str
    unit: str = ""
    format: str = ".4f"

    @property
    def suffix(self) -> str:
        """What follows a value: the unit, else (a plain number) the label."""
        return self.unit or self.label

    def value(self, value: float) -> str:
        return f"{value:{self.format}} {self.suffix}"
