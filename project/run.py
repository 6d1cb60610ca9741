"""The one entry point: `python run.py [all|prepare|train|evaluate|sample|bench] [options]`.

`python run.py --epochs 2` is the quick validation: it resolves the configuration once,
then chains the pipeline's stages (prepare → train → evaluate → sample) under --out-dir.
Each stage is also a command of its own, declared once in its module (utils/stage.py:
PIPELINE): the config sections it reads, its files (`--best PATH`, ...; by default under
--out-dir) and its own options; `run.py STAGE --help` lists them. A stage takes its
configuration from the options below or from `--stage-config FILE`, its sections as the
workflow resolved them. project/README.md documents every output's fields.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

import torch

from testing.stage_evaluate import print_quick_validation
from utils.config import add_arguments, build
from utils.distributed import launched_ranks
from utils.errors import ProjectError
from utils.stage import (
    PIPELINE,
    TOOLS,
    Files,
    Stage,
    option,
    resolve,
    stage_config,
    write_stage_configs,
)

CHAIN: tuple[Stage, ...] = tuple(importlib.import_module(name).STAGE for name in PIPELINE)
STAGES = {s.name: s for s in (*CHAIN, *(importlib.import_module(m).STAGE for m in TOOLS))}
# Every file a stage writes, by name: where it goes under --out-dir unless an option names it.
FILES = {name: path for stage in STAGES.values() for name, path in stage.outputs.items()}
SECTIONS = {stage.name: stage.sections for stage in CHAIN}
DATA = STAGES["train"].inputs  # the prepared data that training reads
CONFIG_DIR = "config"  # `all`: the resolved stage configs, as the workflow writes them


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Character-level GPT on Tiny Shakespeare (../shared/plan.md).",
        epilog="Without a stage, `all` runs. Outputs and their fields: project/README.md.",
    )
    commands = parser.add_subparsers(dest="stage", metavar="STAGE")
    everything = commands.add_parser("all", help="prepare, train, evaluate and sample")
    common_options(everything)
    for stage in CHAIN:
        stage.options(everything)
    for stage in STAGES.values():
        command = commands.add_parser(stage.name, help=stage.help, description=stage.help)
        common_options(command)
        command.add_argument(
            "--stage-config",
            type=Path,
            help="the stage's config sections as a JSON file (what the workflow passes); "
            "replaces --config, --set, --epochs, --seed, --device and --data-source",
        )
        stage.options(command)
        files = command.add_argument_group("files of the stage")
        for name in stage.files:
            files.add_argument(option(name), type=Path, metavar="PATH", help=default_of(name))
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in {"all", *STAGES, "-h", "--help"}:
        argv = ["all", *argv]
    args = parser.parse_args(argv)
    args.argv = argv
    return args


def common_options(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)
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


def default_of(name: str) -> str:
    return f"default: <out-dir>/{FILES[name]}"


def stage_files(args: argparse.Namespace) -> Files:
    """Every file: the one its option names, else its place under --out-dir."""
    return {name: getattr(args, name, None) or args.out_dir / FILES[name] for name in FILES}


def run_all(args: argparse.Namespace) -> int:
    """Resolve once, write the stage configs as the workflow does, chain the stages."""
    resolved = resolve(args)
    configs = write_stage_configs(args.out_dir / CONFIG_DIR, resolved, SECTIONS)
    files = stage_files(args)
    for stage in CHAIN:
        args.stage_config = configs[stage.name]  # what train's torchrun processes read
        stage.run(build(resolved.view(stage.sections), stage.sections), files, args)
    passed = print_quick_validation(files)
    print(f"outputs: {args.out_dir.resolve()}")
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(  # under torchrun, rank 0 alone reports progress
        level=logging.INFO if launched_ranks().main else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.detect_anomaly:
            torch.autograd.set_detect_anomaly(True)
        if args.stage == "all":
            return run_all(args)
        stage = STAGES[args.stage]
        stage.run(stage_config(args, stage.sections), stage_files(args), args)
    except ProjectError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
