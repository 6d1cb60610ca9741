"""train.devices > 1 on the CPU: torchrun starts 2 processes (gloo) that train DDP shares
of the plan's global batch, on the real text.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import torch
from harness.io import read_json, read_jsonl

from project.tests.dispatch import PROJECT_DIR
from project.tests.run_files import output, work_file
from project.training.checkpoint import LAST
from project.training.resume import LOG_FILE, log_until

Argv = Callable[..., list[str]]
# Without dropout both runs compute the same function: each process's masks differ.
SAME_FUNCTION = ("--set", "model.dropout=0.0")


def train(argv: list[str], devices: int, log: Path) -> subprocess.Popen:
    """`run.py train` in a process group of its own, one thread per process."""
    command = [sys.executable, str(PROJECT_DIR / "run.py"), *argv]
    command += ["--set", f"train.devices={devices}"]
    with log.open("w") as console:
        return subprocess.Popen(
            command,
            cwd=PROJECT_DIR,
            stdout=console,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            start_new_session=True,
        )


def wait_until_free(lock: Path) -> None:
    """Until no process holds the work folder's lock (the kernel is ending the workers)."""
    deadline = time.monotonic() + 10
    with lock.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                assert time.monotonic() < deadline, "a worker outlived its killed torchrun"
                time.sleep(0.05)


def train_records(out: Path) -> list[dict]:
    return [r for r in read_jsonl(output(out, "train_log")) if r["kind"] == "train"]


@pytest.mark.slow
def test_two_gloo_processes_give_the_single_process_losses(
    tmp_path: Path, tiny_cli: Argv, with_prepared_data: Callable[[Path], Path]
) -> None:
    """Each process averages its half of the batch and DDP averages the two, where one
    process averages all of it: the same mean, rounded differently. The first steps agree
    to float32 rounding; training at the peak learning rate then amplifies the rounding
    (to 0.02 near step 100) and the curves meet again, as closely as the rounding allows.
    """
    runs = {}
    for devices in (1, 2):
        out = with_prepared_data(tmp_path / f"devices{devices}")
        console = tmp_path / f"{devices}.log"
        process = train(tiny_cli("train", out, *SAME_FUNCTION), devices, console)
        assert process.wait(timeout=600) == 0, console.read_text()
        runs[devices] = out
    single, double = train_records(runs[1]), train_records(runs[2])
    summaries = {devices: read_json(output(out, "summary")) for devices, out in runs.items()}
    assert summaries[1]["world_size"] == 1 and summaries[2]["world_size"] == 2
    # Rank 0 alone wrote: one record a step.
    steps = list(range(1, summaries[2]["steps"] + 1))
    assert [r["step"] for r in double] == [r["step"] for r in single] == steps
    # Measured with torch 2.13 on a 2-core AMD EPYC (family 25, AVX-512), OMP_NUM_THREADS 1
    # and 2 and ATEN_CPU_CAPABILITY unset (avx512), avx2 and default; the thread count
    # changed nothing. The first 20 steps: at most 4.8e-7 apart (9.5e-7 with seeds 1-3:
    # 2 float32 ulps of a loss near 4.2). The end, one process against two: the last 20
    # steps' mean at most 5.6e-3 apart, the validation loss 7.3e-3 (both avx2); any two of
    # the six runs (3 kernel paths, 1 or 2 processes) 0.012. Bounds: 5 and 2.5 times those.
    first = [abs(a["loss"] - b["loss"]) for a, b in zip(single[:20], double[:20], strict=True)]
    assert max(first) <= 5e-6
    last_mean = [sum(r["loss"] for r in run[-20:]) / 20 for run in (single, double)]
    assert abs(last_mean[0] - last_mean[1]) <= 0.03
    val = [summary["best_val_loss"] for summary in summaries.values()]
    assert abs(val[0] - val[1]) <= 0.03
    assert double[-1]["loss"] < double[0]["loss"] - 1.0


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_in_one(
    tmp_path: Path, tiny_cli: Argv, with_prepared_data: Callable[[Path], Path]
) -> None:
    out = with_prepared_data(tmp_path / "killed")
    argv = tiny_cli("train", out, "--set", "train.checkpoint_every_steps=40")
    process = train(argv, 2, tmp_path / "killed.log")
    log_path, last_path = work_file(out, LOG_FILE), work_file(out, LAST)
    try:
        deadline = time.monotonic() + 1800  # a hang guard: a busy 2-core machine is slow
        while not (
            log_path.is_file()
            and log_until(log_path, 10**9)[-1:]
            and log_until(log_path, 10**9)[-1]["step"] >= 100
        ):
            assert process.poll() is None, (tmp_path / "killed.log").read_text()
            assert time.monotonic() < deadline, "the run did not get far enough in time"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # torchrun; its workers die with it
        process.wait()
    wait_until_free(out / ".train.resume.lock")
    checkpoint = torch.load(last_path, weights_only=True)
    assert checkpoint["state"]["step"] >= 80

    resumed = train([*argv, "--resume"], 1, tmp_path / "resumed.log")
    assert resumed.wait(timeout=600) == 0, (tmp_path / "resumed.log").read_text()
    summary = read_json(output(out, "summary"))
    assert summary["resumed_from_step"] == checkpoint["state"]["step"]
    assert summary["world_size"] == 1
    assert [r["step"] for r in train_records(out)] == list(range(1, summary["steps"] + 1))


@pytest.mark.slow
def test_torchrun_and_its_workers_die_with_a_killed_run_py(
    tmp_path: Path, tiny_cli: Argv, with_prepared_data: Callable[[Path], Path]
) -> None:
    """`kill -9` of `run.py train` alone (outside the workflow, which kills its whole
    process group): torchrun and both workers end too, and publish nothing.
    """
    out = with_prepared_data(tmp_path / "killed")
    process = train(tiny_cli("train", out), 2, tmp_path / "killed.log")
    log_path = work_file(out, LOG_FILE)
    tree: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 1800  # a hang guard: a busy 2-core machine is slow
        while not (log_path.is_file() and log_until(log_path, 10**9)):
            assert process.poll() is None, (tmp_path / "killed.log").read_text()
            assert time.monotonic() < deadline, "training did not start in time"
            time.sleep(0.05)
        tree = psutil.Process(process.pid).children(recursive=True)  # torchrun, the workers
        assert len(tree) >= 3, tree
        process.send_signal(signal.SIGKILL)
        process.wait()
        _, alive = psutil.wait_procs(tree, timeout=120)
        assert alive == [], "torchrun or a worker outlived the killed run.py"
    finally:
        for child in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
    assert not output(out, "summary").exists()
    assert log_path.is_file(), "the work folder stays, to resume from"
