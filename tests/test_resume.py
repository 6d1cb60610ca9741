"""A training job killed with SIGKILL resumes from its newest checkpoint when the rule runs
again, by a later `snakemake` or by the rule's own retry, and the run ends bit-identical to
an uninterrupted one (real processes, real signals, the real text, the tiny model).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from project.training.resume import log_until
from workflow_runs import run_and_kill_trainer, run_and_stop, snakemake, tiny_repo

# Two epochs of the tiny model in batches of 32 windows (950 steps each) with a checkpoint
# every 100 steps.
RESUMABLE = {
    "runs": {"r": {"overrides": {"train.checkpoint_every_steps": 100, "train.batch_size": 32}}},
    "seeds": [1],
    "epochs": 2,
}
RUN = Path("results/r/seed1")
WORK_LOG = RUN / "train.resume" / "train_log.jsonl"


def logged_steps(path: Path) -> int:
    """Training steps in a log that the trainer is appending to (a torn line is skipped)."""
    if not path.is_file():
        return 0
    return sum(record["kind"] == "train" for record in log_until(path, sys.maxsize))


def killed_at(repo: Path, steps: int) -> int:
    """Run the workflow, SIGKILL training once the work log holds `steps` steps; return
    Snakemake's exit code.
    """
    return run_and_kill_trainer(repo, lambda: logged_steps(repo / WORK_LOG) >= steps)


def train_log(repo: Path) -> str:
    """The console log of the newest training try."""
    return (repo / RUN / "logs" / "train.log").read_text(encoding="utf-8")


@pytest.mark.slow
def test_killed_training_resumes_and_ends_bit_identical(tmp_path: Path) -> None:
    reference = tiny_repo(tmp_path / "reference", **RESUMABLE)
    snakemake(reference, "--cores", "2")

    repo = tiny_repo(tmp_path / "killed", **RESUMABLE, train_retries=0)
    # 1. Killed at once, before any checkpoint: Snakemake fails and deletes the outputs.
    assert killed_at(repo, 0) != 0
    assert not (repo / RUN / "checkpoints").exists()
    # 2. The next run starts from step 0 (nothing to resume); killed after a checkpoint.
    assert killed_at(repo, 150) != 0
    assert "starting from step 0" in train_log(repo)
    # 3. The next run resumes from that checkpoint; killed in the second epoch.
    assert killed_at(repo, 1250) != 0
    assert "at step 100\n" in train_log(repo)
    # 4. The next run resumes from the newest checkpoint, a later step, and finishes.
    snakemake(repo, "--cores", "2")
    resumed = int(re.search(r"resumed from \S+ at step (\d+)", train_log(repo))[1])
    assert 1200 <= resumed < 1900, train_log(repo)
    assert json.loads((repo / RUN / "train_summary.json").read_text())["resumed_from_step"] == (
        resumed
    )
    assert not (repo / RUN / "train.resume").exists(), "a finished run drops its work folder"
    for name in ("metrics.json", "quick_validation.json", "samples.txt"):
        assert (repo / RUN / name).read_bytes() == (reference / RUN / name).read_bytes(), name
    dry_run = snakemake(repo, "-n")
    assert "Nothing to be done" in dry_run.stdout + dry_run.stderr


@pytest.mark.slow
def test_rule_retry_resumes_by_itself(tmp_path: Path) -> None:
    """With `train_retries: 1` a killed try is retried in the same invocation, from its
    newest checkpoint, and the workflow still completes.
    """
    repo = tiny_repo(tmp_path / "retried", **RESUMABLE, train_retries=1)
    assert killed_at(repo, 450) == 0
    assert re.search(r"resumed from \S+ at step 400\n", train_log(repo))
    assert (repo / RUN / "ml_res.md").is_file()


# Ctrl-C in the terminal (SIGINT to its foreground process group), a signal to the snakemake
# process alone (`kill -INT PID`, a CI cancel, a script that runs it), `kill -9` of the
# train job's shell (the parent of the GPU monitor, which is the parent of the training), or
# `kill -9` of snakemake itself (which leaves its lock behind).
STOPS = ("ctrl-c", "SIGINT", "SIGTERM", "SIGHUP", "kill-the-shell", "kill-9-snakemake")
# One short epoch (118 steps of 256 windows), a checkpoint every 20 steps: cheap to repeat
# for every kind of stop.
STOPPED = {
    "runs": {"r": {"overrides": {"train.checkpoint_every_steps": 20, "train.batch_size": 256}}},
    "seeds": [1],
    "epochs": 1,
}


def stopper(stop: str) -> Callable[[subprocess.Popen[bytes], psutil.Process], None]:
    if stop == "ctrl-c":
        return lambda workflow, _: os.killpg(workflow.pid, signal.SIGINT)
    if stop == "kill-the-shell":
        return lambda _, trainer: trainer.parent().parent().kill()
    if stop == "kill-9-snakemake":
        return lambda workflow, _: workflow.kill()
    return lambda workflow, _: workflow.send_signal(signal.Signals[stop])


@pytest.mark.slow
@pytest.mark.parametrize("stop", STOPS)
def test_a_stopped_workflow_stops_training_and_a_plain_snakemake_resumes(
    tmp_path: Path, stop: str
) -> None:
    """A stop, past the first checkpoint, ends training within the monitor's grace period,
    keeps train.resume/ and publishes nothing; a plain `snakemake` then resumes.
    """
    repo = tiny_repo(tmp_path / "stopped", **STOPPED, train_retries=0)
    code, trainer = run_and_stop(repo, lambda: logged_steps(repo / WORK_LOG) >= 30, stopper(stop))
    assert code != 0
    _, alive = psutil.wait_procs([trainer], timeout=120)
    assert alive == [], "training outlived the stopped workflow"
    _, alive = psutil.wait_procs(processes_in(repo), timeout=120)
    assert alive == [], f"a job outlived the stopped workflow: {alive}"
    assert (repo / RUN / "train.resume" / "last.pt").is_file(), "stopped, not run to its end"
    assert not (repo / RUN / "train_summary.json").exists()
    resumed = snakemake(repo, "--cores", "2", "--until", "train")  # no --unlock
    assert re.search(r"resumed from \S+ at step [1-9]\d*\n", train_log(repo)), train_log(repo)
    lifted = "Lifted the lock of a Snakemake that no longer runs here"
    assert (lifted in resumed.stderr) == (stop == "kill-9-snakemake"), resumed.stderr


def processes_in(folder: Path) -> list[psutil.Process]:
    """The processes working in `folder` (a job's shell, its monitor, its training)."""
    here = []
    for process in psutil.process_iter(["cwd"]):
        if process.info["cwd"] and Path(process.info["cwd"]) == folder.resolve():
            here.append(process)
    return here
