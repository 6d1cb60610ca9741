"""The workflow on a real one-node SLURM cluster, through profiles/slurm.

tests/slurm/start-cluster.sh installs (if missing) and starts Debian's SLURM 22.05 with
slurmdbd accounting on this machine, as root. Its node has 2 CPUs and two GPUs that are a
FAKE (no device behind them): SLURM allocates and accounts them, the jobs run with
`device: cpu`.

1. The tiny model through SLURM with the profile as it is: every rule must be a SLURM job
   with what the profile asks for, and the results must equal a local `snakemake --cores 2`
   run of the same configuration byte for byte.
2. A long training whose first try has a 1-minute time limit: SLURM must kill it (TIMEOUT),
   Snakemake must submit it again, and the next try must resume from its checkpoint.
3. A training with `train.devices: 2` on the node's two FAKE GPUs: one job, one job step
   that runs the command once, one torchrun with two processes (gloo on the CPU).

Opt-in (minutes, root, installs packages): CHARGPT_SLURM_TESTS=1 pytest tests/test_slurm.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from workflow_runs import REPO, tiny_repo, workflow_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("CHARGPT_SLURM_TESTS") != "1",
        reason="starts a SLURM cluster as root; set CHARGPT_SLURM_TESTS=1 to run it",
    ),
]

CLUSTER = REPO / "tests" / "slurm" / "start-cluster.sh"
PROFILE = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
DEFAULTS = PROFILE["default-resources"]
GPU_RULES = {"train", "evaluate", "sample"}  # resources: gpu=1 (train: train.devices, 1)
CPU_RULES = {"prepare", "report", "summary"}
RUN = Path("results/quick/seed1337")

# 1. The tiny model, one epoch. The node has 2 CPUs: each GPU job takes both, as in the
# local run (the same threads, the same floating-point results).
TINY = {"device": "cpu"}
PROFILE_ARGS = (
    "--workflow-profile",
    "profiles/slurm",
    "--slurm-init-seconds-before-status-checks",
    "5",
    "--slurm-keep-successful-logs",
)
TINY_ARGS = ("--set-threads", "train=2", "evaluate=2", "sample=2")

# 2. 30 epochs of the tiny model in batches of 32 windows (28,500 steps; over 2 minutes on
# one idle core) outlast the first try's 1-minute limit, which SLURM enforces 60-90 s after
# the start. The next try
# gets 60 minutes: with 1 minute for every try, a try that finishes its training after the
# limit but before SLURM's check is still recorded TIMEOUT, its outputs are deleted and the
# next one starts over (seen here), so the number of tries would depend on the machine.
LONG = {
    "device": "cpu",
    "epochs": 30,
    "overrides": {
        "train.checkpoint_every_steps": 500,
        "train.patience": None,
        "train.batch_size": 32,
    },
    "train_retries": 2,  # the rule's `retries: config["train_retries"]`
}
FIRST_LIMIT_MIN, RETRY_LIMIT_MIN = 1, 60
LONG_ARGS = (
    "--set-threads",
    "train=1",
    "--set-resources",
    f"train:runtime={FIRST_LIMIT_MIN} if attempt == 1 else {RETRY_LIMIT_MIN}",
    "--until",
    "train",
)

# 3. train.devices: 2 (`resources: gpu=2`, sbatch --gpus=2). The job must start its command
# once: two copies would be two torchruns training the same run folder. Batches of 256 (twice
# the tiny model's): 118 steps an epoch, not 238 (each a gloo all-reduce on 2 cores).
DEVICES = 2
DDP = {"device": "cpu", "overrides": {"train.devices": DEVICES, "train.batch_size": 256}}
DDP_ARGS = ("--set-threads", "train=2", "--until", "train")
TORCHRUN_STARTED = f"training on {DEVICES} devices: starting torchrun"
WORK_DIR_BUSY = "is in use: training by process"  # project/utils/lock.py

SACCT_FIELDS = (
    "--format=JobID,JobName,Comment,Partition,Account,State,ExitCode,Timelimit,ReqTRES,"
    "AllocTRES,Start,End,Elapsed"
)


@dataclass
class SlurmRun:
    repo: Path
    sacct: str  # sacct --parsable2 output, header first
    jobs: list[dict[str, str]]  # its rows, in job id order, with "rule" added

    def states(self, rule: str) -> list[str]:
        return [job["State"] for job in self.jobs if job["rule"] == rule]


def run_workflow(repo: Path, *args: str) -> str:
    """Run snakemake in `repo` (it must succeed); return its console output, also kept in
    repo/console.txt.
    """
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=repo,
        env=workflow_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=3600,
    )
    (repo / "console.txt").write_text(result.stdout, encoding="utf-8")
    assert result.returncode == 0, f"snakemake {' '.join(args)} failed:\n{result.stdout}"
    return result.stdout


def run_on_slurm(repo: Path, *args: str) -> SlurmRun:
    """Run the workflow through profiles/slurm; return what sacct recorded of its jobs."""
    since = (datetime.now() - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
    console = run_workflow(repo, *PROFILE_ARGS, *args)
    # The plugin names every job of one snakemake run after that run's id.
    found = re.search(r"SLURM run ID: (\S+)", console)
    assert found, console
    sacct, jobs = query_sacct(
        "--allocations", f"--starttime={since}", f"--name={found[1]}", SACCT_FIELDS
    )
    (repo / "sacct.txt").write_text(sacct, encoding="utf-8")
    for job in jobs:
        # The plugin's comment: rule_<rule>[_wildcards_<values>].
        job["rule"] = re.match(r"rule_([a-z]+)", job["Comment"])[1]
    jobs.sort(key=lambda job: int(job["JobID"]))
    return SlurmRun(repo, sacct, jobs)


def query_sacct(*args: str) -> tuple[str, list[dict[str, str]]]:
    """`sacct --parsable2 ARGS`: its output (header first) and its rows as dicts."""
    sacct = subprocess.run(
        ["sacct", "--parsable2", *args], check=True, capture_output=True, text=True
    ).stdout
    print(sacct)
    header, *rows = sacct.splitlines()
    return sacct, [dict(zip(header.split("|"), row.split("|"), strict=True)) for row in rows]


def slurm_time(minutes: int) -> str:
    """A time limit as sacct prints it: [D-]HH:MM:SS."""
    days, rest = divmod(minutes, 24 * 60)
    clock = f"{rest // 60:02d}:{rest % 60:02d}:00"
    return f"{days}-{clock}" if days else clock


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """The one-node cluster, started for this module; its daemons stop after it."""
    subprocess.run([CLUSTER], check=True, timeout=900)
    yield
    subprocess.run([CLUSTER, "stop"], check=False, timeout=300)


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The repository copies of every run, made together: the same code in all of them."""
    root = tmp_path_factory.mktemp("slurm-test")
    return {
        "local": tiny_repo(root / "local", **TINY),
        "slurm": tiny_repo(root / "slurm", **TINY),
        "timeout": tiny_repo(root / "timeout", **LONG),
        "ddp": tiny_repo(root / "ddp", **DDP),
    }


@pytest.fixture(scope="module")
def local_run(copies: dict[str, Path]) -> Path:
    run_workflow(copies["local"], "--cores", "2")
    return copies["local"]


@pytest.fixture(scope="module")
def slurm_run(cluster: None, copies: dict[str, Path]) -> SlurmRun:
    return run_on_slurm(copies["slurm"], *TINY_ARGS)


@pytest.fixture(scope="module")
def timeout_run(cluster: None, copies: dict[str, Path]) -> SlurmRun:
    return run_on_slurm(copies["timeout"], *LONG_ARGS)


@pytest.fixture(scope="module")
def ddp_run(cluster: None, copies: dict[str, Path]) -> SlurmRun:
    return run_on_slurm(copies["ddp"], *DDP_ARGS)


def test_every_rule_is_a_slurm_job_with_the_profiles_resources(slurm_run: SlurmRun) -> None:
    jobs = slurm_run.jobs
    assert sorted(job["rule"] for job in jobs) == sorted(GPU_RULES | CPU_RULES), slurm_run.sacct
    for job in jobs:
        rule, req, alloc = job["rule"], job["ReqTRES"].split(","), job["AllocTRES"].split(",")
        assert job["State"] == "COMPLETED", job
        assert job["Partition"] == DEFAULTS["slurm_partition"], job
        assert job["Account"] == DEFAULTS["slurm_account"], job
        assert f"mem={DEFAULTS['mem_mb']}M" in req, job
        runtime = PROFILE["set-resources"].get(rule, {}).get("runtime", DEFAULTS["runtime"])
        assert job["Timelimit"] == slurm_time(runtime), job
        if rule in GPU_RULES:
            # One (FAKE) GPU and the two CPUs of --set-threads.
            assert "gres/gpu=1" in req and "gres/gpu=1" in alloc, job
            assert "cpu=2" in alloc, job
            # SLURM handed the job its GPU: the GPU monitor claimed no slot of its own.
            monitor = json.loads((slurm_run.repo / RUN / "monitor" / f"{rule}.json").read_text())
            assert monitor["gpu_slot"] is None, monitor
        else:
            assert not any(tres.startswith("gres/gpu") for tres in req + alloc), job
            assert "cpu=1" in alloc, job
    assert not (slurm_run.repo / ".snakemake" / "gpu-slots").exists()


def test_slurm_results_equal_a_local_run(slurm_run: SlurmRun, local_run: Path) -> None:
    for name in ("metrics.json", "samples.txt"):
        local = (local_run / RUN / name).read_bytes()
        assert (slurm_run.repo / RUN / name).read_bytes() == local, name


def test_a_timed_out_training_resumes_on_the_next_try(timeout_run: SlurmRun) -> None:
    assert timeout_run.states("prepare") == ["COMPLETED"], timeout_run.sacct
    assert timeout_run.states("train") == ["TIMEOUT", "COMPLETED"], timeout_run.sacct
    first, second = (job for job in timeout_run.jobs if job["rule"] == "train")
    assert first["Timelimit"] == slurm_time(FIRST_LIMIT_MIN), first
    assert second["Timelimit"] == slurm_time(RETRY_LIMIT_MIN), second
    slurm_log = timeout_run.repo / ".snakemake" / "slurm_logs" / "rule_train" / "quick_1337"
    assert "DUE TO TIME LIMIT" in (slurm_log / f"{first['JobID']}.log").read_text()

    # logs/train.log holds the last try's output: it resumed from a checkpoint.
    log = (timeout_run.repo / RUN / "logs" / "train.log").read_text(encoding="utf-8")
    resumed = re.findall(r"resumed from \S+ at step (\d+)", log)
    assert len(resumed) == 1 and int(resumed[0]) > 0, log
    summary = json.loads((timeout_run.repo / RUN / "train_summary.json").read_text())
    assert summary["resumed_from_step"] == int(resumed[0])
    assert summary["steps"] == LONG["epochs"] * summary["steps_per_epoch"], summary
    assert not (timeout_run.repo / RUN / "train.resume").exists()


def test_two_devices_start_one_torchrun_with_two_processes(ddp_run: SlurmRun) -> None:
    (train,) = (job for job in ddp_run.jobs if job["rule"] == "train")
    assert train["State"] == "COMPLETED", ddp_run.sacct
    assert f"gres/gpu={DEVICES}" in train["AllocTRES"].split(","), train

    # Inside the job, its script (step <id>.batch) runs the command through `srun -n1`: one
    # step <id>.0 of one task. A step that ran it once a GPU (srun taking --ntasks-per-gpu,
    # the plugin's issues #316 and #459) would show NTasks 2, a second srun a step <id>.1.
    sacct, steps = query_sacct(
        f"--jobs={train['JobID']}", "--format=JobID,JobName,NTasks,AllocTRES"
    )
    sruns = [step for step in steps if re.fullmatch(rf"{train['JobID']}\.\d+", step["JobID"])]
    assert [step["NTasks"] for step in sruns] == ["1"], sacct
    assert f"gres/gpu={DEVICES}" in sruns[0]["AllocTRES"].split(","), sacct

    # What every task printed (the job's SLURM log) and the stage's own log: one launch, and
    # no second trainer refused by the work folder's lock.
    slurm_log = ddp_run.repo / ".snakemake" / "slurm_logs" / "rule_train" / "quick_1337"
    for log in (slurm_log / f"{train['JobID']}.log", ddp_run.repo / RUN / "logs" / "train.log"):
        text = log.read_text(encoding="utf-8")
        assert text.count(TORCHRUN_STARTED) == 1, text
        assert WORK_DIR_BUSY not in text, text
    # That one torchrun trained with both processes.
    summary = json.loads((ddp_run.repo / RUN / "train_summary.json").read_text())
    assert summary["world_size"] == DEVICES, summary
