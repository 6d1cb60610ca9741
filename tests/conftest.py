"""Shared fixtures of the workflow tests (helpers: workflow_runs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from workflow_runs import CONSOLE, FAKE_GPUS, SWEEP, snakemake, tiny_repo, workflow_env


@pytest.fixture(scope="session")
def finished_workflow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository copy in which `snakemake --cores 2 --resources gpu=2` has run the sweep
    to its summary, two GPU jobs at a time on the FAKE GPU list.
    """
    repo = tiny_repo(tmp_path_factory.mktemp("workflow") / "repo", **SWEEP)
    result = snakemake(repo, "--cores", "2", "--resources", "gpu=2", env=workflow_env(**FAKE_GPUS))
    (repo / CONSOLE).write_text(result.stdout + result.stderr, encoding="utf-8")
    return repo
