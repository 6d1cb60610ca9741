"""A (run, seed) as the plan resolves it: the harness's planner (harness/planner.py)
reads one spec per (run, seed) and writes each stage's config file. The workflow
(common.smk) resolves every configured run this way before any job; the search
(search_trials.py) resolves a batch's trials first, in a scratch folder, to set aside
those that the plan refuses.

A subprocess: neither imports plan code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from typing import Any

PLANNER = "harness.planner"


def run_spec(config: dict[str, Any], folder: str, run: dict[str, Any], seed: int) -> dict:
    """One (run, seed) for the planner, its files in `folder`: the run's project config (else
    the workflow's), then the overrides in order: the workflow's defaults, the shared
    overrides and the run's own, the seed.
    """
    chosen = run.get("project_config", config["project_config"])
    return {
        "dir": folder,
        "config": None if chosen == "auto" else chosen,
        "data_source": config["data_source"],
        "epochs": config["epochs"],
        "overrides": [
            {"device": config["device"]},
            {**config["overrides"], **run.get("overrides", {})},
            {"seed": seed},
        ],
    }


def read_runs(plan: str, results: str, specs: list[dict]) -> subprocess.CompletedProcess[str]:
    """The planner on `specs` of the plan folder `plan`, under the folder `results`: on
    success its JSON on stdout (each run's stage configs and data folder, the plan's
    declaration); else one line on stderr, `error: <folder>: <reason>` for the first run
    that it refuses.
    """
    return subprocess.run(
        [sys.executable, "-m", PLANNER, plan],
        input=json.dumps({"results": results, "runs": specs}),
        capture_output=True,
        text=True,
    )


class PlanError(Exception):
    """The plan folder cannot be loaded (its planner's one line)."""


def declared_plan(plan: str) -> dict[str, Any]:
    """The plan's declaration as the planner prints it (harness/plan.py: Plan.record): its
    name, stages and roles, objective and direction; no run resolved.
    """
    with tempfile.TemporaryDirectory() as scratch:
        result = read_runs(plan, scratch, [])
    if result.returncode != 0:
        raise PlanError(result.stderr.strip().splitlines()[-1] if result.stderr else plan)
    return json.loads(result.stdout)["plan"]
