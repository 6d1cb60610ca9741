"""A stage of the pipeline, declared once in a module of its own (`STAGE = Stage(...)`):
the config sections it reads, the files it reads and writes, and the function that runs it.

run.py builds each stage's command line from its declaration, and the workflow's rules take
their files, config and code inputs from the same declarations: reads.py parses them
(`declared`), nothing is imported. So the declaration's `name`, `sections`, `inputs` and
`outputs` are written as literals.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.config import (
    CPU_PRESET,
    PLAN_CONFIG,
    Config,
    ConfigError,
    Resolved,
    build,
    resolve_arguments,
)
from utils.errors import ProjectError
from utils.inputs import require, verify
from utils.io import read_json, write_text_if_changed

logger = logging.getLogger(__name__)

Files = dict[str, Path]
# The modules of the stages that `run.py all` and the workflow chain, in their order; then
# the stages that are tools of their own.
PIPELINE = (
    "data.stage_prepare",
    "training.stage_train",
    "testing.stage_evaluate",
    "testing.stage_sample",
)
TOOLS = ("training.stage_bench",)
RESOLVED = "resolved"  # the whole configuration of a run, beside its stages' configs
# The fields of a declaration that the workflow reads (written as literals).
DECLARED = ("name", "sections", "inputs", "outputs")


def no_options(parser: argparse.ArgumentParser) -> None:
    """A stage with no options of its own."""


@dataclass(frozen=True)
class Stage:
    """One stage: what it reads and writes, and how it runs.

    `inputs` name files that earlier stages write (their `outputs`); `outputs` maps each
    file the stage writes to its place under the run folder (run.py's --out-dir, the
    workflow's results/<run>/seed<seed>/, or for `prepare` the shared results/data/<key>/).
    Every file is also an option of the stage: `train_log` → `--train-log PATH`.
    """

    name: str
    help: str
    sections: tuple[str, ...]  # the config sections it reads: a change of one reruns it
    inputs: tuple[str, ...]
    outputs: dict[str, str]
    run: Callable[[Any, Files, argparse.Namespace], object]
    options: Callable[[argparse.ArgumentParser], None] = no_options

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.inputs, *self.outputs)


def option(name: str) -> str:
    """The command-line option of a file: `train_log` → `--train-log`."""
    return f"--{name.replace('_', '-')}"


def declared(path: Path) -> dict[str, Any]:
    """The literal fields (DECLARED) of the `STAGE = Stage(...)` in a stage module's source."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(target, "id", None) for target in node.targets] == ["STAGE"]
            and isinstance(node.value, ast.Call)
        ):
            fields = {kw.arg: kw.value for kw in node.value.keywords if kw.arg in DECLARED}
            return {key: ast.literal_eval(fields[key]) for key in DECLARED}
    raise ValueError(f"{path}: no `STAGE = Stage(...)` declaration")


class UsageError(ProjectError, ValueError):
    """Options that do not fit together (e.g. --stage-config and --set)."""

    exit_code = 2


def resolve(args: argparse.Namespace) -> Resolved:
    """The run's configuration from the options; says so when the CPU preset stands in."""
    resolved = resolve_arguments(args)
    if resolved.source == "cpu-preset":
        logger.warning(
            "on the CPU: using the CPU preset %s instead of the plan's full "
            "configuration (pass --config %s to insist on the plan's sizes)",
            CPU_PRESET,
            PLAN_CONFIG,
        )
    return resolved


def stage_config(args: argparse.Namespace, sections: tuple[str, ...]) -> Config:
    """The sections a stage reads: from --stage-config, or resolved from the options."""
    if args.stage_config is None:
        return build(resolve(args).view(sections), sections)
    chosen = [
        name
        for name in ("config", "epochs", "seed", "device", "data_source")
        if getattr(args, name) is not None
    ] + (["set"] if args.assignments else [])
    if chosen:
        raise UsageError(f"--stage-config replaces --{', --'.join(chosen)}; pass one or the other")
    if not args.stage_config.is_file():
        raise UsageError(f"--stage-config {args.stage_config}: no such file")
    try:
        return build(read_json(args.stage_config), sections)
    except ConfigError as error:
        raise ConfigError(f"{args.stage_config}: {error}") from None


def check_recorded(files: Files, summary: str, names: tuple[str, ...], producer: str) -> None:
    """Each named file is the one `producer` recorded (size, SHA-256) in its `summary` file."""
    require([files[summary]], producer)
    recorded = read_json(files[summary])["files"]
    for name in names:
        verify(files[name], recorded[name], producer, files[summary])


def write_stage_configs(
    directory: Path, resolved: Resolved, sections: dict[str, tuple[str, ...]]
) -> dict[str, Path]:
    """<directory>/<stage>.json (the sections it reads) and resolved.json (the whole
    configuration, its source and the deviations from the plan), each rewritten only when
    its content changes, so that its mtime moves only with a real change.
    """
    records = {stage: resolved.view(read) for stage, read in sections.items()}
    records[RESOLVED] = resolved.record()
    paths = {}
    for name, record in records.items():
        paths[name] = directory / f"{name}.json"
        write_text_if_changed(paths[name], json.dumps(record, indent=2) + "\n")
    return paths
