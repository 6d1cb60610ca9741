"""The plan's dispatcher as the tests drive it: run.py's `main` in this process, and the
plan's stages and files by name (harness/cli.py with this plan folder).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness import cli, config
from harness.config import Resolved
from harness.plan import load_plan

PROJECT_DIR = Path(__file__).resolve().parents[1]
PLAN = load_plan(PROJECT_DIR)
CHAIN = PLAN.stages
STAGES = {stage.name: stage for stage in (*PLAN.stages, *PLAN.tools)}
# Every file a stage writes, by name: where it goes under --out-dir.
FILES = {name: path for stage in STAGES.values() for name, path in stage.outputs.items()}
DATA = PLAN.training.inputs  # the prepared data that training reads


def main(argv: list[str]) -> int:
    return cli.main(PROJECT_DIR, argv)


def parse_args(argv: list[str]) -> argparse.Namespace:
    return cli.parse_args(PLAN, argv)


def resolve(args: argparse.Namespace) -> Resolved:
    return cli.resolve(PLAN, args)


def load(
    config_file: Path | None = None, overrides: list[dict[str, Any]] | tuple = ()
) -> tuple[Any, dict[str, Any]]:
    """The plan's config (and its raw mapping) with a config file and overrides."""
    return config.load(PLAN, config_file, overrides)


PLAN_CONFIG = PROJECT_DIR / "configs" / "plan.yaml"  # holds no keys: insists on the plan


def resolve_config(
    config_file: Path | None = None,
    overrides: list[dict[str, Any]] | tuple = (),
    cuda: bool | None = None,
) -> Resolved:
    """A run's configuration as the harness decides it for this plan."""
    return config.resolve(PLAN, config_file, overrides, cuda)
