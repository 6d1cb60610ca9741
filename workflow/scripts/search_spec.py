"""The `search:` section of config/config.yaml: an adaptive search whose trials are runs.

    search:
      study: search                  # trial runs are named search_0000, search_0001, ...
      space:
        train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
        model.n_layer: {low: 1, high: 4, int: true}
        model.n_head: {choices: [2, 4, 8]}
      trials: 20

The schema checks the section's shape; check_spec the rest. The search itself
(workflow/scripts/search.py) keeps the study in Optuna's storage and writes the runs of its
trials to RUNS_FILE, which trial_runs reads back for the workflow (common.smk's
configured_runs): a trial that is training, or finished and complete, is a run there; a
pruned or failed one is not.

Needs only the standard library and sweep.py: the workflow imports it before any job, where
Optuna need not be installed.
"""

from __future__ import annotations

import json
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
