"""A stage of a plan's pipeline, declared once (`STAGE = Stage(...)` in the plan's stages/):
the config sections it reads, the files it reads and writes, the function that runs it,
and its role in the workflow (whether it needs a GPU, whether it is the one that trains).

run.py builds each stage's command line from its declaration, and the workflow's rules take
their files, config and code inputs from the same declarations, which the planner writes as
JSON (`declaration`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ProjectError
from harness.inputs import require, verify
from harness.io import read_json, write_text_if_changed

Files = dict[str, Path]
RESOLVED = "resolved"  # the whole configuration of a run, beside its stages' configs
# How the training stage treats an existing checkpoint in its work folder: ignore it,
# continue from it (refusing one made under other settings or data), or continue from it
# when it matches and start over when not (what the workflow passes).
RESUME_MODES = ("off", "strict", "restart-on-change")


def no_options(parser: argparse.ArgumentParser) -> None:
    """A stage with no options of its own."""


@dataclass(frozen=True)
class Stage:
    """One stage: what it reads and writes, and how it runs.

    `inputs` name files that earlier stages write (their `outputs`); `outputs` maps each
    file the stage writes to its place under the run folder (run.py's --out-dir, the
    workflow's results/<run>/seed<seed>/, or for the plan's first stage, which prepares the
    data, the shared results/data/<key>/). Every file is also an option of the stage:
    `train_log` → `--train-log PATH`. A stage of the pipeline writes `<name>_cost`, its
    cost record (harness/cost.py), which the report reads.
    """

    name: str
    help: str
    sections: tuple[str, ...]  # the config sections it reads: a change of one reruns it
    inputs: tuple[str, ...]
    outputs: dict[str, str]
    run: Callable[[Any, Files, argparse.Namespace], object]
    options: Callable[[argparse.ArgumentParser], None] = no_options
    gpu: bool = False  # the workflow gives it a GPU slot and the NVML monitor
    # The one stage that trains: it resumes from a work folder (--work-dir, --resume), and the
    # workflow retries it and gives it the plan's devices.
    trains: bool = False

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.inputs, *self.outputs)

    def declaration(self) -> dict[str, Any]:
        """What the workflow reads of the stage."""
        return {
            "sections": list(self.sections),
            "inputs": list(self.inputs),
            "outputs": dict(self.outputs),
            "gpu": self.gpu,
            "trains": self.trains,
        }


def add_resume_options(parser: argparse.ArgumentParser, stage: str) -> None:
    """The training stage's options, which the dispatcher gives it (harness/cli.py)."""
    parser.add_argument(
        "--resume",
        nargs="?",
        const="strict",
        default="off",
        choices=RESUME_MODES,
        help="continue from the newest checkpoint of the work folder. Alone: refuse one "
        "made under other settings or data (except what the plan lets change on resume); "
        "`restart-on-change` (what the workflow passes): start over instead",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        metavar="PATH",
        help=f"training's own folder while it runs (default: <out-dir>/{work_folder(stage)})",
    )


def add_source_option(parser: argparse.ArgumentParser) -> None:
    """The first stage's option, which the dispatcher gives it (harness/cli.py): the
    record of its data source that the planner wrote (Plan.source_record).
    """
    parser.add_argument(
        "--source",
        type=Path,
        metavar="PATH",
        help="the data as the workflow located it (its source.json); by default the stage "
        "looks for it itself, as the plan's data section says",
    )


def work_folder(stage: str) -> str:
    """The training stage's work folder under --out-dir, unless --work-dir names one."""
    return f"{stage}.resume"


def work_dir(args: argparse.Namespace, stage: str) -> Path:
    """Where the training stage keeps its checkpoints and log while it runs."""
    return args.work_dir or args.out_dir / work_folder(stage)


def option(name: str) -> str:
    """The command-line option of a file: `train_log` → `--train-log`."""
    return f"--{name.replace('_', '-')}"


class UsageError(ProjectError, ValueError):
    """Options that do not fit together (e.g. --stage-config and --set)."""

    exit_code = 2


def check_recorded(files: Files, summary: str, names: tuple[str, ...], producer: str) -> None:
    """Each named file is the one `producer` recorded (size, SHA-256) in its `summary` file."""
    require([files[summary]], producer)
    recorded = read_json(files[summary])["files"]
    for name in names:
        verify(files[name], recorded[name], producer, files[summary])


def write_stage_configs(directory: Path, records: dict[str, Any]) -> dict[str, Path]:
    """<directory>/<name>.json for each record (a stage's sections, or RESOLVED: the whole
    configuration, its source and the deviations from the plan), each rewritten only when
    its content changes, so that its mtime moves only with a real change.
    """
    paths = {}
    for name, record in records.items():
        paths[name] = directory / f"{name}.json"
        write_text_if_changed(paths[name], json.dumps(record, indent=2) + "\n")
    return paths
