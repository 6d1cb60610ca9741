"""Helpers of the workflow tests: temporary copies of the repository that run Snakemake
on the real text with a tiny model, and a way to kill their training.

Not in conftest.py: project/tests has a conftest module of its own, and pytest keeps one
module of that name when both folders are collected.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
COPIED = ("Snakefile", "workflow", "harness", "project", "plans", "config", "profiles")
IGNORED = shutil.ignore_patterns("__pycache__", ".pytest_cache", "outputs", "tests")

# How long a workflow may run before a test calls it hung: a guard, not a figure under test
# (a 2-core machine busy with other work trains the tiny model ten times slower).
HANG = 3600

# A model small enough that one epoch of the real text (238 steps of 128 windows) takes
# seconds on a 2-core CPU.
TINY_CONFIG = """\
model:
  n_layer: 1
  n_head: 2
  d_model: 32
  block_size: 32
  dropout: 0.0
train:
  batch_size: 128
  compile: false
eval:
  batch_size: 256
"""


def workflow_env(**extra: str) -> dict[str, str]:
    """The environment of a Snakemake run: this interpreter's `python` first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    # Each plan's offline copy of its data, in the mirror beside the checkout.
    env["CHARGPT_DATA_MIRROR"] = str(SHARED_DATA)
    env["DIGITS_DATA_MIRROR"] = str(SHARED_DATA)
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
        timeout=HANG,
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


def data_folder(repo: Path) -> Path:
    """The one folder of prepared data, results/data/<key>/ (the runs of a test share one
    data configuration).
    """
    (folder,) = (repo / "results" / "data").iterdir()
    return folder


def configure(repo: Path, **settings: Any) -> None:
    """Change top-level keys of the copy's config/config.yaml (e.g. runs=..., seeds=...)."""
    path = repo / "config" / "config.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config.update(settings)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


# The sweep of the end-to-end tests: 2 runs × 2 seeds of the tiny model, 1 epoch each.
SWEEP = {
    "runs": {"base": {}, "hot": {"overrides": {"sample.temperature": 1.2, "train.lr": 0.002}}},
    "seeds": [1, 2],
}
TINY = {"project_config": "tiny.yaml", "epochs": 1}
# What the finished workflow printed (kept beside the copy's results).
CONSOLE = "console.txt"
# A FAKE list of two GPUs (this machine has none): the GPU jobs take slots 0 and 1.
FAKE_GPUS = {"CHARGPT_FAKE_GPUS": "0,1"}


def tiny_repo(destination: Path, **settings: Any) -> Path:
    """A repository copy configured for the tiny model (plus `settings`)."""
    if not (SHARED_DATA / "tinyshakespeare" / "input.txt").is_file():
        pytest.skip(f"the verified Tiny Shakespeare copy is not at {SHARED_DATA}")
    repo = copy_repo(destination)
    configure(repo, **{**TINY, **settings})
    return repo


def trainer_of(
    workflow: subprocess.Popen[bytes], run: str = "", plan: str = "project"
) -> psutil.Process | None:
    """The `python <plan>/run.py train` process below `workflow` (of `run`, if named; the
    GPU monitor around it has run.py in its command line too, as an argument, not as its
    script), `plan` being the plan folder as config/config.yaml names it.
    """
    inside = f"results/{run}/" if run else ""
    with contextlib.suppress(psutil.NoSuchProcess):
        for process in psutil.Process(workflow.pid).children(recursive=True):
            try:
                command = process.cmdline()
            except psutil.NoSuchProcess:
                continue
            if command[1:3] == [f"{plan}/run.py", "train"] and inside in " ".join(command):
                return process
    return None


# A terminal starts a command with the stop signals at their defaults; a test run started in the
# background (`nohup pytest &`, a CI runner) would hand it SIGINT and SIGHUP ignored, and a
# workflow rightly ignores what it was started to ignore.
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def as_from_a_terminal() -> None:
    """In the child before exec: the stop signals back at their defaults."""
    for number in TERMINAL_SIGNALS:
        signal.signal(number, signal.SIG_DFL)


def start_as_from_a_terminal(command: list[str], repo: Path, log: str) -> subprocess.Popen[bytes]:
    """`command` in `repo`, in a process group of its own with the stop signals at their
    defaults, as a terminal runs a command (`os.killpg(pid, ...)` is Ctrl-C); its output
    added to repo/`log`.
    """
    with (repo / log).open("a") as out:
        return subprocess.Popen(
            command,
            cwd=repo,
            env=workflow_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=as_from_a_terminal,
        )


def run_and_stop(
    repo: Path,
    ready: Callable[[], bool],
    stop: Callable[[subprocess.Popen[bytes], psutil.Process], None],
) -> tuple[int, psutil.Process]:
    """Start `snakemake --cores 2` as from a terminal; once its training process runs and
    `ready()` holds, call stop(snakemake, training). Returns Snakemake's exit code and the
    training.
    """
    workflow = start_as_from_a_terminal(
        [sys.executable, "-m", "snakemake", "--cores", "2"], repo, "snakemake.out"
    )
    deadline = time.monotonic() + HANG
    try:
        while True:
            assert workflow.poll() is None, "the workflow ended before the stop"
            assert time.monotonic() < deadline, f"training did not get that far in {HANG} s"
            trainer = trainer_of(workflow)
            if trainer is not None and ready():
                stop(workflow, trainer)
                break
            time.sleep(0.05)
        return workflow.wait(timeout=HANG), trainer
    finally:
        stop_tree(workflow.pid)


def stop_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (no job of a failed test trains on)."""
    try:
        tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def run_and_kill_trainer(repo: Path, ready: Callable[[], bool]) -> int:
    """Start `snakemake --cores 2`; SIGKILL its training process once `ready()` holds (as a
    crash, an OOM kill or a scheduler's limit would end it). Returns Snakemake's exit code.
    """
    code, _ = run_and_stop(repo, ready, lambda _, trainer: trainer.send_signal(signal.SIGKILL))
    return code
