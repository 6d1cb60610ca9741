"""Where run.py puts its files under --out-dir (run.FILES), for the tests.

Not in conftest.py: tests/ has a conftest module of its own, and pytest keeps one module of
that name when both folders are collected.
"""

from __future__ import annotations

from pathlib import Path

from harness.stage import work_folder

from project.tests import dispatch as run


def output(out_dir: Path, name: str) -> Path:
    """Where run.py puts file `name` (run.FILES) under --out-dir when no option names it."""
    return out_dir / run.FILES[name]


def work_file(out_dir: Path, name: str) -> Path:
    """A file of training's work folder (the log, a checkpoint) while training runs."""
    return out_dir / work_folder("train") / name
