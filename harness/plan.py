"""A research plan as the harness and the workflow see it: one declaration.

A plan is a folder (model/, data/, training/, testing/, utils/, stages/, run.py, ...) whose
`plan.py` declares, once, `PLAN = Plan(...)`: its configuration (the dataclass whose
defaults are the plan), its stages in order, the figure that comparisons and searches
optimise and in which direction, the checks of its quick validation, and what the report
shows of its outputs. The folder is a package of its own, named after the folder, loaded by
`load_plan` (its modules import each other relatively), so that two plans never shadow each
other in one process.

The workflow never imports a plan: the planner (harness/planner.py) writes what it needs of
the declaration as JSON (`Plan.record`).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from harness.contract import OF_ANY, OF_FIRST, OF_TRAINING, cost_output
from harness.errors import ProjectError
from harness.sections import section_names
from harness.stage import Files, Stage

DIRECTIONS = ("minimize", "maximize")


class PlanError(ProjectError, ValueError):
    """A plan folder that cannot be loaded, or a declaration that contradicts itself."""

    exit_code = 2


@dataclass(frozen=True)
class Objective:
    """The figure of metrics.json that comparisons and searches optimise."""

    figure: str  # its name in metrics.json
    direction: Literal["minimize", "maximize"]


@dataclass(frozen=True)
class Report:
    """What the report shows of a run's outputs besides its figures: each a stage's output
    name, shown as text (a sample) or as a picture.
    """

    texts: tuple[str, ...] = ()
    pictures: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """One research plan, declared in its folder's plan.py."""

    name: str  # a short identifier: the MLflow experiment, the report's title line
    title: str  # what the plan is, in a few words
    document: str  # the plan's text, e.g. "../shared/plan.md" (as the report cites it)
    config: type  # the config dataclass: its defaults are the plan
    stages: tuple[Stage, ...]  # the pipeline in order; the first prepares the shared data
    objective: Objective
    epochs_key: str  # the dotted key that `--epochs` and the workflow's `epochs:` set
    # A run's files → the quick validation's checks printed; whether all passed.
    quick_validation: Callable[[Files], bool]
    # `--data-source` (a file, a folder, a URL) → the overrides that make the data come from it.
    data_source: Callable[[str], dict[str, Any]]
    # The first stage's config → where it will read its data, as a record (the planner
    # writes it before any job) whose "sha256", the data's content, decides when it reruns.
    source_record: Callable[[Any], dict[str, Any]]
    devices_key: str | None = None  # the dotted key of the devices a training uses (DDP)
    tools: tuple[Stage, ...] = ()  # stages run on their own (a benchmark), not by the workflow
    report: Report = field(default_factory=Report)
    cpu_preset: str | None = None  # configs/ file that stands in for the plan on the CPU
    cpu_deviation: str | None = None  # what a run on the CPU does unlike the plan (report)
    folder: Path = Path()  # set by load_plan

    def __post_init__(self) -> None:
        if self.objective.direction not in DIRECTIONS:
            raise PlanError(
                f"{self.name}: objective direction {self.objective.direction!r} is neither "
                f"of {', '.join(DIRECTIONS)}"
            )
        known = set(section_names(self.config))
        for stage in (*self.stages, *self.tools):
            unknown = sorted(set(stage.sections) - known)
            if unknown:
                raise PlanError(f"{self.name}: stage {stage.name} reads unknown sections {unknown}")
        uncosted = [s.name for s in self.stages if cost_output(s.name) not in s.outputs]
        if uncosted:
            raise PlanError(f"{self.name}: stages {uncosted} have no `<stage>_cost` output")
        trainers = [stage.name for stage in self.stages if stage.trains]
        if len(trainers) != 1:
            raise PlanError(f"{self.name}: exactly one stage trains (trains=True), not {trainers}")
        written = {name for stage in self.stages for name in stage.outputs}
        wanted = {
            "the first stage": (set(OF_FIRST), set(self.stages[0].outputs)),
            "the training stage": (set(OF_TRAINING), set(self.training.outputs)),
            "a stage": (set(OF_ANY), written),
        }
        for who, (names, outputs) in wanted.items():
            if not names <= outputs:
                raise PlanError(
                    f"{self.name}: {who} must write {sorted(names - outputs)} "
                    "(harness/contract.py: what the workflow reads)"
                )

    @property
    def training(self) -> Stage:
        (stage,) = [stage for stage in self.stages if stage.trains]
        return stage

    def stage(self, name: str) -> Stage:
        return {stage.name: stage for stage in (*self.stages, *self.tools)}[name]

    def record(self) -> dict[str, Any]:
        """What the workflow reads of the plan (names, roles, objective), as JSON."""
        return {
            "name": self.name,
            "title": self.title,
            "document": self.document,
            "folder": self.folder.as_posix(),
            "sections": list(section_names(self.config)),
            "objective": {"figure": self.objective.figure, "direction": self.objective.direction},
            "epochs_key": self.epochs_key,
            "devices_key": self.devices_key,
            "stages": {stage.name: stage.declaration() for stage in self.stages},
            "report": {"texts": list(self.report.texts), "pictures": list(self.report.pictures)},
        }


def package_name(folder: Path) -> str:
    """The import name of a plan folder's package: the folder's name, made an identifier."""
    return re.sub(r"\W", "_", folder.resolve().name)


def load_plan(folder: Path) -> Plan:
    """The declaration of the plan in `folder` (its plan.py's PLAN), its package loaded."""
    folder = folder.resolve()
    package = load_package(folder)
    try:
        module = importlib.import_module(f"{package.__name__}.plan")
    except ModuleNotFoundError as error:
        if error.name != f"{package.__name__}.plan":
            raise
        raise PlanError(f"{folder}: no plan.py (a plan folder declares PLAN in plan.py)") from None
    plan = getattr(module, "PLAN", None)
    if not isinstance(plan, Plan):
        raise PlanError(f"{folder}/plan.py: no `PLAN = Plan(...)` declaration")
    return dataclasses.replace(plan, folder=folder)


def load_package(folder: Path) -> ModuleType:
    """The plan folder as a package (its __init__.py), registered under its package name
    once a process; a folder of that name already loaded from elsewhere is an error.
    """
    name = package_name(folder)
    loaded = sys.modules.get(name)
    if loaded is not None:
        if [Path(p).resolve() for p in getattr(loaded, "__path__", [])] != [folder]:
            raise PlanError(
                f"{folder}: a package named {name} is already loaded from "
                f"{getattr(loaded, '__file__', '?')}; rename the plan folder"
            )
        return loaded
    init = folder / "__init__.py"
    if not init.is_file():
        raise PlanError(f"{folder}: not a plan folder (no __init__.py)")
    spec = importlib.util.spec_from_file_location(
        name, init, submodule_search_locations=[str(folder)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
