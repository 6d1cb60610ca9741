"""A plan's one entry point: `python run.py [all|STAGE|config] [options]` (each plan's run.py
calls `main` with its own folder).

`python run.py --epochs 2` is the quick validation: it resolves the configuration once,
then chains the plan's stages under --out-dir and prints the plan's checks. Each stage is
also a command of its own, declared once (harness/stage.py): the config sections it reads,
its files (`--best PATH`, ...; by default under --out-dir) and its own options;
`run.py STAGE --help` lists them. A stage takes its configuration from the options or from
`--stage-config FILE`, its sections as the workflow resolved them. `run.py config [options]`
prints the resolved configuration without running anything; `run.py config --keys` every
key of the plan's config, its default, type and what it does (harness/reference.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from harness.config import Resolved, add_arguments, resolve_arguments
from harness.errors import ProjectError
from harness.io import read_json
from harness.plan import Plan, load_plan
from harness.reference import render
from harness.sections import ConfigError, build_config
from harness.stage import (
    RESOLVED,
    Files,
    Stage,
    UsageError,
    add_resume_options,
    add_source_option,
    option,
    write_stage_configs,
)

logger = logging.getLogger(__name__)

CONFIG_DIR = "config"  # `all`: the resolved stage configs, as the workflow writes them


def parse_args(plan: Plan, argv: list[str]) -> argparse.Namespace:
    """The command line: a command (`all` without one) and its options. Only the chosen
    command's stage adds its own options, so that parsing imports nothing another stage
    needs (a stage's options may import its machinery).
    """
    named = {"all", "config", *(stage.name for stage in (*plan.stages, *plan.tools))}
    if not argv or argv[0] not in {*named, "-h", "--help"}:
        argv = ["all", *argv]
    parser = argparse.ArgumentParser(
        description=f"{plan.title} ({plan.document}).",
        epilog="Without a command, `all` runs. Outputs and their fields: the plan's README.md.",
    )
    commands = parser.add_subparsers(dest="stage", metavar="COMMAND")
    everything = commands.add_parser("all", help=", ".join(s.name for s in plan.stages))
    if argv[0] == "all":
        common_options(everything, plan)
        add_source_option(everything)
        add_resume_options(everything, plan.training.name)
        for stage in plan.stages:
            stage.options(everything)
    shown = commands.add_parser("config", help="print the resolved configuration, run nothing")
    add_arguments(shown, plan)
    shown.add_argument(
        "--keys",
        action="store_true",
        help="print every config key instead: its default (the plan's value), type and what "
        "it does, as Markdown tables (the plan's part of config/README.md)",
    )
    for stage in (*plan.stages, *plan.tools):
        command = commands.add_parser(stage.name, help=stage.help, description=stage.help)
        if argv[0] == stage.name:
            stage_options(command, plan, stage)
    args = parser.parse_args(argv)
    args.argv = argv
    return args


def stage_options(command: argparse.ArgumentParser, plan: Plan, stage: Stage) -> None:
    """A stage's command line: the common options, its config file, its own options and
    one option a file.
    """
    common_options(command, plan)
    command.add_argument(
        "--stage-config",
        type=Path,
        help="the stage's config sections as a JSON file (what the workflow passes); "
        "replaces --config, --set, --epochs, --seed, --device and --data-source",
    )
    if stage is plan.stages[0]:
        add_source_option(command)
    if stage.trains:
        add_resume_options(command, stage.name)
    stage.options(command)
    files = command.add_argument_group("files of the stage")
    for name in stage.files:
        default = f"default: <out-dir>/{file(plan, name)}"
        files.add_argument(option(name), type=Path, metavar="PATH", help=default)


def common_options(parser: argparse.ArgumentParser, plan: Plan) -> None:
    add_arguments(parser, plan)
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("outputs"),
        help="folder for every file not named by its own option (default: ./outputs)",
    )
    parser.add_argument(
        "--detect-anomaly",
        action="store_true",
        help="torch.autograd anomaly detection (slow): names the operation that made a NaN",
    )


def file(plan: Plan, name: str) -> str:
    """Where file `name` goes under --out-dir: the place its producing stage declares."""
    (place,) = [s.outputs[name] for s in (*plan.stages, *plan.tools) if name in s.outputs]
    return place


def stage_files(plan: Plan, args: argparse.Namespace) -> Files:
    """Every file: the one its option names, else its place under --out-dir."""
    names = [name for stage in (*plan.stages, *plan.tools) for name in stage.outputs]
    return {name: getattr(args, name, None) or args.out_dir / file(plan, name) for name in names}


def resolve(plan: Plan, args: argparse.Namespace) -> Resolved:
    """The run's configuration from the options; says so when the CPU preset stands in."""
    resolved = resolve_arguments(plan, args)
    if resolved.source == "cpu-preset":
        logger.warning(
            "on the CPU: using the CPU preset configs/%s instead of the plan's full "
            "configuration (pass --config configs/plan.yaml to insist on the plan's sizes)",
            plan.cpu_preset,
        )
    return resolved


def stage_config(plan: Plan, args: argparse.Namespace, sections: tuple[str, ...]) -> Any:
    """The sections a stage reads: from --stage-config, or resolved from the options."""
    if args.stage_config is None:
        return build_config(plan.config, resolve(plan, args).view(sections), sections)
    chosen = chosen_options(args)
    if chosen:
        raise UsageError(f"--stage-config replaces --{', --'.join(chosen)}; pass one or the other")
    if not args.stage_config.is_file():
        raise UsageError(f"--stage-config {args.stage_config}: no such file")
    try:
        return build_config(plan.config, read_json(args.stage_config), sections)
    except ConfigError as error:
        raise ConfigError(f"{args.stage_config}: {error}") from None


def chosen_options(args: argparse.Namespace) -> list[str]:
    """The options that choose a configuration (add_arguments') given on the command line."""
    return [
        name
        for name in ("config", "epochs", "seed", "device", "data_source")
        if getattr(args, name) is not None
    ] + (["set"] if args.assignments else [])


def stage_records(resolved: Resolved, plan: Plan) -> dict[str, Any]:
    """What a run's config folder holds, as the workflow writes it: the sections of each
    stage after the first (whose config goes to its shared data folder) and RESOLVED.
    """
    records = {stage.name: resolved.view(stage.sections) for stage in plan.stages[1:]}
    return {**records, RESOLVED: resolved.record()}


def run_all(plan: Plan, args: argparse.Namespace) -> int:
    """Resolve once, write the stage configs as the workflow does, chain the stages."""
    resolved = resolve(plan, args)
    first = plan.stages[0]
    records = {first.name: resolved.view(first.sections), **stage_records(resolved, plan)}
    configs = write_stage_configs(args.out_dir / CONFIG_DIR, records)
    files = stage_files(plan, args)
    for stage in plan.stages:
        args.stage_config = configs[stage.name]  # what a torchrun process of training reads
        config = build_config(plan.config, resolved.view(stage.sections), stage.sections)
        stage.run(config, files, args)
    passed = plan.quick_validation(files)
    print(f"outputs: {args.out_dir.resolve()}")
    return 0 if passed else 1


def show_config(plan: Plan, args: argparse.Namespace) -> int:
    if args.keys:
        chosen = chosen_options(args)
        if chosen:
            raise UsageError(
                f"--keys lists the plan's keys and defaults; it takes no --{', --'.join(chosen)}"
            )
        print(render(plan), end="")
        return 0
    resolved = resolve_arguments(plan, args)
    print(f"# source: {resolved.source}")
    print(yaml.safe_dump(resolved.raw, sort_keys=False, allow_unicode=True), end="")
    return 0


def main(folder: Path, argv: list[str] | None = None) -> int:
    """Run a command of the plan in `folder` (its run.py passes its own folder)."""
    try:
        plan = load_plan(folder)
    except ProjectError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    args = parse_args(plan, list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(  # under torchrun (which sets RANK), rank 0 alone reports progress
        level=logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.stage == "config":
            return show_config(plan, args)
        if args.detect_anomaly:
            import torch  # only here: `config` and the planner need no torch

            torch.autograd.set_detect_anomaly(True)
        if args.stage == "all":
            return run_all(plan, args)
        stage = plan.stage(args.stage)
        stage.run(stage_config(plan, args, stage.sections), stage_files(plan, args), args)
    except ProjectError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0
