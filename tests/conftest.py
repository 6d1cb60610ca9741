"""Shared fixtures of the workflow tests: a temporary copy of the repository that runs
Snakemake on the real text with a tiny model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
COPIED = ("Snakefile", "workflow", "project", "config", "profiles")
IGNORED = shutil.ignore_patterns("__pycache__", ".pytest_cache", "outputs", "tests")

# A model small enough that one epoch of the real text takes seconds on a 2-core CPU.
TINY_CONFIG = """\
model:
  n_layer: 1
  n_head: 2
  d_model: 32
  block_size: 32
  dropout: 0.0
train:
  batch_size: 32
  compile: false
eval:
  batch_size: 256
"""


def workflow_env(**extra: str) -> dict[str, str]:
    """The environment of a Snakemake run: this interpreter's `python` first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["CHARGPT_DATA_MIRROR"] = str(SHARED_DATA)
    env.update(extra)
    return env


def snakemake(
    repo: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=repo,
        env=env or workflow_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and result.returncode != 0:
        command = " ".join(args)
        raise AssertionError(f"snakemake {command} failed:\n{result.stdout}\n{result.stderr}")
    return result


def copy_repo(destination: Path) -> Path:
    """A copy of the workflow's files, with a tiny project config beside them."""
    destination.mkdir(parents=True)
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=IGNORED)
        else:
            shutil.copy2(source, destination / name)
    (destination / "tiny.yaml").write_text(TINY_CONFIG, encoding="utf-8")
    return destination


TINY_RUN = ("--config", "project_config=tiny.yaml", "epochs=1", "run_name=ci")


@pytest.fixture(scope="session")
def finished_workflow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository copy in which `snakemake --cores 2` has run to the report."""
    if not (SHARED_DATA / "tinyshakespeare" / "input.txt").is_file():
        pytest.skip(f"the verified Tiny Shakespeare copy is not at {SHARED_DATA}")
    repo = copy_repo(tmp_path_factory.mktemp("workflow") / "repo")
    snakemake(repo, "--cores", "2", *TINY_RUN)
    return repo
