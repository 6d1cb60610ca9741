"""Tests of the command lines of workflow/scripts/gpu_monitor.py and of the tools it puts
together: supervisor.py, gpu_slots.py and nvml_sampler.py (their code in process, on a fake
NVML: test_gpu_monitor_nvml.py).

They run the real pynvml, which on a machine without an NVIDIA driver must fail softly; the
GPU slot tests use CHARGPT_FAKE_GPUS, a FAKE device list, so that they need no GPU. The tests
of signals, process trees and failures to run or to write use real processes, signals and
folders.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pynvml
import pytest

from gpu_slots import FAKE_GPUS_SOURCE, SLOT_POLL_S

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
SCRIPT = SCRIPTS / "gpu_monitor.py"


@pytest.fixture(autouse=True)
def no_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tools' device choice must not depend on the environment the tests happen to run in."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def wrapper_argv(tool: str, tmp_path: Path, name: str = "x") -> list[str]:
    """The command line that starts `tool` with the options it needs: gpu_monitor.py writes
    tmp_path/name.csv/.json, gpu_slots.py takes its slots in tmp_path/slots."""
    options = {
        "gpu_monitor.py": ["--out-prefix", str(tmp_path / name)],
        "gpu_slots.py": ["--slot-dir", str(tmp_path / "slots")],
        "supervisor.py": [],
    }
    return [sys.executable, str(SCRIPTS / tool), *options[tool]]


def real_nvml_present() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def run_cli(prefix: Path, *command: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(SCRIPT), "--out-prefix", str(prefix), "--", *command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.skipif(real_nvml_present(), reason="a real NVML library is present")
def test_cli_without_gpu_runs_the_job_and_says_why(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "out" / "x", sys.executable, "-c", "print('hi')")
    assert result.returncode == 0
    assert result.stdout == "hi\n"
    summary = json.loads((tmp_path / "out" / "x.json").read_text())
    assert summary["gpu_available"] is False
    assert summary["reason"]
    assert summary["sampling_cpu_s"] is summary["sampling_cpu_share"] is None  # no sampling
    assert summary["exit_code"] == 0
    assert summary["command"] == [sys.executable, "-c", "print('hi')"]
    header = "t_s,device_used_bytes,job_used_bytes,gpu_util_pct,mem_util_pct,power_w,temperature_c"
    assert (tmp_path / "out" / "x.csv").read_text() == header + "\n"


@pytest.mark.skipif(not real_nvml_present(), reason="needs a real NVML library and GPU")
def test_cli_with_gpu_samples_it(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "x", sys.executable, "-c", "import time; time.sleep(0.3)")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "x.json").read_text())
    assert summary["gpu_available"] is True, summary["reason"]
    assert summary["samples"] > 0
    assert summary["sampling_error"] is None


def test_cli_passes_on_the_exit_code(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "x", sys.executable, "-c", "raise SystemExit(3)")
    assert result.returncode == 3
    summary = json.loads((tmp_path / "x.json").read_text())
    assert summary["exit_code"] == 3
    assert summary["gpu_slot"] is None  # no --slot-dir


def test_cli_reports_a_signal_as_128_plus_its_number(tmp_path: Path) -> None:
    kill_self = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    result = run_cli(tmp_path / "x", sys.executable, "-c", kill_self)
    assert result.returncode == 128 + signal.SIGKILL


# As the kernel's OOM killer ends a training: SIGKILL, once it holds some memory (64 MiB).
OOM_KILLED = "import os, signal; hold = bytearray(64 * 2**20); os.kill(os.getpid(), signal.SIGKILL)"


def test_a_command_killed_by_sigkill_is_reported_with_its_memory_and_its_record_kept(
    tmp_path: Path,
) -> None:
    """The monitor says the command was killed by SIGKILL, that the OOM killer is the
    likely cause, and the memory it held; its record stays in <prefix>.failed.json (not an
    output: Snakemake deletes a failed job's outputs), until the job succeeds.
    """
    prefix = tmp_path / "monitor" / "train"
    result = run_cli(prefix, sys.executable, "-c", OOM_KILLED)
    assert result.returncode == 128 + signal.SIGKILL
    (line,) = result.stderr.splitlines()
    assert line.startswith("gpu_monitor.py: error: the command was killed by SIGKILL (signal 9)")
    assert "out-of-memory killer" in line and f"kept in {prefix}.failed.json" in line
    peak = float(re.search(r"peak resident memory was ([\d.]+) GiB", line)[1])
    assert peak >= 64 / 1024, line
    kept = json.loads(Path(f"{prefix}.failed.json").read_text())
    assert kept["exit_code"] == 128 + signal.SIGKILL and "SIGKILL" in kept["error"]
    assert run_cli(prefix, sys.executable, "-c", "pass").returncode == 0
    assert not Path(f"{prefix}.failed.json").exists(), "a success removes the failed record"


# The job starts a grandchild (a sleeping Python), writes "<its PID> <the grandchild's PID>" to
# the file argv[1], then, by argv[2]: "sleep" sleeps, "ignore-sigterm" sleeps ignoring SIGTERM
# (the grandchild too), "exit" exits at once, leaving the grandchild behind.
TREE_JOB = """
import os, signal, subprocess, sys, time
if sys.argv[2] == "ignore-sigterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open(sys.argv[1] + ".tmp", "w") as handle:
    handle.write(f"{os.getpid()} {grandchild.pid}")
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
if sys.argv[2] != "exit":
    time.sleep(60)
"""


@pytest.fixture
def pids() -> Iterator[list[int]]:
    """PIDs of the processes a test started, itself or not; any still running at the end are
    SIGKILLed, so that a failing test leaves none behind."""
    started: list[int] = []
    yield started
    for pid in filter(is_running, started):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def is_running(pid: int) -> bool:
    """Whether `pid` runs; a zombie (dead, not yet reaped by its new parent) does not."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def still_running(pids: list[int], within: float = 10.0) -> list[int]:
    """Those of `pids` that still run after waiting up to `within` seconds for them to end."""
    deadline = time.monotonic() + within
    while any(map(is_running, pids)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return list(filter(is_running, pids))


def start_tree_job(
    tmp_path: Path,
    pids: list[int],
    mode: str,
    *options: str,
    tool: str = "gpu_monitor.py",
    shell: bool = False,
) -> subprocess.Popen[bytes]:
    """Start the wrapper `tool` (with `options`) around TREE_JOB, or with `shell` a bash that
    runs it as a job's shell does, in a pipeline; return (the wrapper or the shell) once the
    job's tree runs.

    Adds the PIDs of the wrapper (and the shell's other children), the job and its child to
    `pids`."""
    pid_file = tmp_path / "job.pids"
    job = [sys.executable, "-c", TREE_JOB, str(pid_file), mode]
    argv = [*wrapper_argv(tool, tmp_path), *options, "--", *job]
    if shell:
        argv = ["bash", "-c", f"{shlex.join(argv)} 2>&1 | cat"]
    wrapper = subprocess.Popen(argv)
    pids.append(wrapper.pid)
    deadline = time.monotonic() + 20
    while not pid_file.exists():
        ended = wrapper.poll() is not None and not pid_file.exists()
        assert not ended, f"the wrapper ended with {wrapper.returncode} before its job started"
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.01)
    pids.extend(int(pid) for pid in pid_file.read_text().split())
    if shell:
        pids.extend(child.pid for child in psutil.Process(wrapper.pid).children())
    return wrapper


@pytest.mark.parametrize("tool", ["gpu_monitor.py", "supervisor.py", "gpu_slots.py"])
def test_cli_job_and_its_children_die_with_a_killed_wrapper(
    tmp_path: Path, pids: list[int], tool: str
) -> None:
    wrapper = start_tree_job(tmp_path, pids, "sleep", tool=tool)
    wrapper.send_signal(signal.SIGKILL)
    assert wrapper.wait(timeout=10) == -signal.SIGKILL
    assert still_running(pids) == []


@pytest.mark.parametrize("tool", ["gpu_monitor.py", "supervisor.py", "gpu_slots.py"])
def test_cli_wrapper_and_its_job_die_with_their_killed_shell(
    tmp_path: Path, pids: list[int], tool: str
) -> None:
    """`kill -9` of the shell that runs the wrapper (a Snakemake job's): no process of the
    job goes on without it, and nothing is written after it died."""
    shell = start_tree_job(tmp_path, pids, "sleep", tool=tool, shell=True)
    shell.send_signal(signal.SIGKILL)
    assert shell.wait(timeout=10) == -signal.SIGKILL
    assert still_running(pids, within=10) == []
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize(
    "stop", [signal.SIGHUP, signal.SIGINT, signal.SIGTERM], ids=lambda stop: stop.name
)
def test_cli_stop_signal_stops_the_job_and_its_children_and_still_writes(
    tmp_path: Path, pids: list[int], stop: signal.Signals
) -> None:
    wrapper = start_tree_job(tmp_path, pids, "sleep")
    wrapper.send_signal(stop)
    assert wrapper.wait(timeout=10) == 128 + stop
    assert still_running(pids) == []
    summary = json.loads((tmp_path / "x.json").read_text())
    assert summary["exit_code"] == 128 + stop
    # The job itself was sent SIGTERM, and it ended by it.
    assert summary["error"] == (
        f"{stop.name} received: sent SIGTERM to the command, which ended with exit code 143"
    )


def test_cli_job_that_ignores_sigterm_is_killed_after_the_grace_period(
    tmp_path: Path, pids: list[int]
) -> None:
    options = ("--kill-after", "0.5")
    wrapper = start_tree_job(tmp_path, pids, "ignore-sigterm", *options)
    started = time.monotonic()
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(timeout=10) == 128 + signal.SIGTERM
    assert time.monotonic() - started >= 0.5  # the grace period was kept
    assert still_running(pids) == []
    summary = json.loads((tmp_path / "x.json").read_text())
    assert summary["error"].endswith(f"exit code {128 + signal.SIGKILL}")


def test_cli_children_the_job_leaves_behind_are_killed(tmp_path: Path, pids: list[int]) -> None:
    wrapper = start_tree_job(tmp_path, pids, "exit")
    assert wrapper.wait(timeout=10) == 0
    assert still_running(pids) == []
    assert json.loads((tmp_path / "x.json").read_text())["error"] is None


@pytest.mark.parametrize(
    ("command", "exit_code", "reason"),
    [
        ("no-such-command", 127, "command not found"),
        ("./no-such-file", 127, "No such file or directory"),
        ("./plain.txt", 126, "Permission denied"),
    ],
    ids=["not-on-path", "missing", "not-executable"],
)
def test_cli_command_it_cannot_run_gives_one_line_and_still_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, exit_code: int, reason: str
) -> None:
    (tmp_path / "plain.txt").write_text("not a program\n")  # mode 0o644: no one may execute it
    monkeypatch.chdir(tmp_path)
    result = run_cli(tmp_path / "x", command, "--flag")
    assert result.returncode == exit_code
    error = f"cannot run {command!r}: {reason}"
    kept = f"this record is kept in {tmp_path / 'x.failed.json'}"
    assert result.stderr == f"gpu_monitor.py: error: {error}; {kept}\n"
    summary = json.loads((tmp_path / "x.json").read_text())
    assert summary["exit_code"] == exit_code
    assert summary["error"] == error
    assert summary["command"] == [command, "--flag"]
    assert (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(
    "read_only",
    [
        pytest.param(
            "chmod",
            marks=pytest.mark.skipif(os.geteuid() == 0, reason="root may write a 0o555 folder"),
        ),
        "under-a-file",  # a folder that cannot exist; root cannot write there either
    ],
)
def test_cli_refuses_an_output_folder_it_cannot_write_before_running_the_job(
    tmp_path: Path, read_only: str
) -> None:
    if read_only == "chmod":
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o555)
    else:
        (tmp_path / "afile").write_text("")
        folder = tmp_path / "afile" / "sub"
    marker = tmp_path / "job-ran"
    result = run_cli(folder / "train", sys.executable, "-c", f"open({str(marker)!r}, 'w')")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert f"cannot write the results in {str(folder)!r}" in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize(("job_code", "wrapper_code"), [(3, 3), (0, 1)])
def test_cli_keeps_a_failing_jobs_exit_code_when_the_results_cannot_be_written(
    tmp_path: Path, job_code: int, wrapper_code: int
) -> None:
    # The job turns the output folder into a file, so that writing fails at the end.
    folder = tmp_path / "out"
    job = (
        "import shutil, sys; "
        f"shutil.rmtree({str(folder)!r}); open({str(folder)!r}, 'w'); sys.exit({job_code})"
    )
    result = run_cli(folder / "x", sys.executable, "-c", job)
    assert result.returncode == wrapper_code
    assert len(result.stderr.splitlines()) == 1
    assert f"error: cannot write the results {folder / 'x'}.csv/.json" in result.stderr


# --- GPU slots, through the command line, on a FAKE device list -------------------------------

# The job prints its PID once it runs, sleeps argv[2] seconds (HOLD: until its stdin closes),
# then writes to the file argv[1] the CUDA_VISIBLE_DEVICES it was given, how many threads its
# wrapper runs, and when it ran (time.time, comparable across processes); it exits with argv[3].
HOLD = "until-stdin-closes"
SLOT_JOB = f"""
import json, os, sys, time
import psutil
start = time.time()
print(os.getpid(), flush=True)
if sys.argv[2] == {HOLD!r}:
    sys.stdin.read()
else:
    time.sleep(float(sys.argv[2]))
seen = dict(
    cuda_visible=os.environ.get("CUDA_VISIBLE_DEVICES"),
    wrapper_threads=psutil.Process(os.getppid()).num_threads(),
    start=start,
    end=time.time(),
)
with open(sys.argv[1], "w") as handle:
    json.dump(seen, handle)
sys.exit(int(sys.argv[3]))
"""


def slot_env(**variables: str) -> dict[str, str]:
    """This environment without GPU choices of its own, plus `variables`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("CUDA_VISIBLE_DEVICES", "CHARGPT_FAKE_GPUS")
    }
    return {**env, **variables}


def start_slot_job(
    tmp_path: Path,
    name: str,
    env: dict[str, str],
    seconds: float | str,
    gpus: int = 1,
    tool: str = "gpu_monitor.py",
    exit_code: int = 0,
) -> subprocess.Popen[str]:
    """Start `tool` with its slots in tmp_path/slots around SLOT_JOB, in the folder tmp_path;
    stdin and stdout are piped."""
    slot_dir = ["--slot-dir", str(tmp_path / "slots")] if tool == "gpu_monitor.py" else []
    job_file = str(tmp_path / f"{name}.job.json")
    job = [sys.executable, "-c", SLOT_JOB, job_file, str(seconds), str(exit_code)]
    argv = [*wrapper_argv(tool, tmp_path, name), *slot_dir, "--gpus", str(gpus), "--", *job]
    return subprocess.Popen(
        argv, env=env, cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def job_record(tmp_path: Path, name: str) -> dict:
    """What SLOT_JOB `name` saw."""
    return json.loads((tmp_path / f"{name}.job.json").read_text())


def wait_until_it_runs(wrapper: subprocess.Popen[str]) -> None:
    """Return once the wrapper's SLOT_JOB runs (it has printed its PID)."""
    assert wrapper.stdout is not None
    assert wrapper.stdout.readline().strip().isdigit()


def finish(tmp_path: Path, name: str, wrapper: subprocess.Popen[str]) -> tuple[dict, dict]:
    """Wait for the wrapper; return its gpu_slot record and what its job saw."""
    assert wrapper.wait(timeout=30) == 0
    summary = json.loads((tmp_path / f"{name}.json").read_text())
    return summary["gpu_slot"], job_record(tmp_path, name)


def is_locked(path: Path) -> bool:
    """Whether another process holds an flock on `path`."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def test_cli_concurrent_jobs_get_their_own_device_and_a_third_waits(tmp_path: Path) -> None:
    env = slot_env(CHARGPT_FAKE_GPUS="0,1")
    names = ("a", "b", "c")
    # a and b hold long enough for c's wrapper (0.3 s to start here) to find both taken.
    wrappers = {name: start_slot_job(tmp_path, name, env, seconds=5.0) for name in names[:2]}
    for wrapper in wrappers.values():
        wait_until_it_runs(wrapper)
    wrappers["c"] = start_slot_job(tmp_path, "c", env, seconds=0.0)
    slots, jobs = {}, {}
    for name, wrapper in wrappers.items():
        with wrapper:
            slots[name], jobs[name] = finish(tmp_path, name, wrapper)

    for name in names:
        assert slots[name]["device"] == jobs[name]["cuda_visible"]  # the job got its slot
        assert slots[name]["source"] == FAKE_GPUS_SOURCE
        assert slots[name]["slot_dir"] == str(tmp_path / "slots")
    assert {slots["a"]["device"], slots["b"]["device"]} == {"0", "1"}
    assert max(jobs["a"]["start"], jobs["b"]["start"]) < min(jobs["a"]["end"], jobs["b"]["end"])
    # c found both devices taken, waited, then ran only after the job on its device ended.
    assert slots["c"]["waited_s"] >= SLOT_POLL_S  # it polled at least once
    holder = next(name for name in "ab" if slots[name]["device"] == slots["c"]["device"])
    assert jobs["c"]["start"] >= jobs[holder]["end"]
    assert sorted(path.name for path in (tmp_path / "slots").iterdir()) == [
        "gpu-0.lock",
        "gpu-1.lock",
    ]


def test_cli_multi_gpu_job_takes_all_its_devices_or_waits_for_them(tmp_path: Path) -> None:
    env = slot_env(CHARGPT_FAKE_GPUS="0,1")
    with start_slot_job(tmp_path, "one", env, seconds=5.0) as one:
        wait_until_it_runs(one)
        with start_slot_job(tmp_path, "pair", env, seconds=0.0, gpus=2) as pair:
            _, one_job = finish(tmp_path, "one", one)
            pair_slot, pair_job = finish(tmp_path, "pair", pair)
    assert pair_slot["device"] == pair_job["cuda_visible"] == "0,1"
    # One device was free all along; the pair started only once both were.
    assert pair_slot["waited_s"] >= SLOT_POLL_S
    assert pair_job["start"] >= one_job["end"]
    assert not is_locked(tmp_path / "slots" / "gpu-0.lock")


@pytest.mark.parametrize("tool", ["gpu_monitor.py", "gpu_slots.py"])
def test_cli_job_needing_more_gpus_than_the_machine_has_is_refused(
    tmp_path: Path, tool: str
) -> None:
    env = slot_env(CHARGPT_FAKE_GPUS="0,1")
    with start_slot_job(tmp_path, "big", env, seconds=0.0, gpus=3, tool=tool) as wrapper:
        assert wrapper.wait(timeout=30) == 2
    assert not (tmp_path / "big.job.json").exists()


def test_cli_slot_of_a_killed_wrapper_is_free_again(tmp_path: Path, pids: list[int]) -> None:
    env = slot_env(CHARGPT_FAKE_GPUS="0")
    with start_slot_job(tmp_path, "killed", env, seconds=30) as killed:
        assert killed.stdout is not None
        pids.append(int(killed.stdout.readline()))
        assert is_locked(tmp_path / "slots" / "gpu-0.lock")
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(timeout=10) == -signal.SIGKILL
        # The job dies with its wrapper; right away, the slot is free.
        assert not is_locked(tmp_path / "slots" / "gpu-0.lock")
        with start_slot_job(tmp_path, "next", env, seconds=0) as after:
            slot, job = finish(tmp_path, "next", after)
    assert slot["device"] == job["cuda_visible"] == "0"
    assert still_running(pids) == []


@pytest.mark.parametrize(
    "cuda_visible",
    [
        "-1",
        pytest.param(
            None,
            marks=pytest.mark.skipif(real_nvml_present(), reason="a real NVML library is present"),
        ),
    ],
)
def test_cli_without_gpu_takes_no_slot_and_leaves_the_environment(
    tmp_path: Path, cuda_visible: str | None
) -> None:
    env = slot_env() if cuda_visible is None else slot_env(CUDA_VISIBLE_DEVICES=cuda_visible)
    with start_slot_job(tmp_path, "x", env, seconds=0) as wrapper:
        slot, job = finish(tmp_path, "x", wrapper)
    assert job["cuda_visible"] == cuda_visible
    assert slot["device"] is None
    assert slot["source"] == (None if cuda_visible is None else "CUDA_VISIBLE_DEVICES")
    assert list((tmp_path / "slots").iterdir()) == []


# --- the tools alone ---------------------------------------------------------------------------


def release(wrapper: subprocess.Popen[str]) -> int:
    """End a SLOT_JOB that holds until its stdin closes; return the wrapper's exit code."""
    assert wrapper.stdin is not None
    wrapper.stdin.close()
    return wrapper.wait(timeout=30)


def test_slots_cli_runs_the_job_on_its_slot_and_samples_nothing(tmp_path: Path) -> None:
    env = slot_env(CHARGPT_FAKE_GPUS="0,1")
    with start_slot_job(tmp_path, "a", env, HOLD, tool="gpu_slots.py", exit_code=3) as wrapper:
        wait_until_it_runs(wrapper)
        assert is_locked(tmp_path / "slots" / "gpu-0.lock")  # held while the job runs
        assert release(wrapper) == 3
    job = job_record(tmp_path, "a")
    assert job["cuda_visible"] == "0"
    assert job["wrapper_threads"] == 1  # no sampling thread beside the main one
    # No monitor files in the folder it ran in: only the job's record and the slots.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.job.json", "slots"]
    assert not is_locked(tmp_path / "slots" / "gpu-0.lock")


def test_slots_cli_second_claimant_gets_the_other_slot(tmp_path: Path) -> None:
    env = slot_env(CHARGPT_FAKE_GPUS="0,1")
    with start_slot_job(tmp_path, "first", env, HOLD, tool="gpu_slots.py") as first:
        wait_until_it_runs(first)
        with start_slot_job(tmp_path, "second", env, 0, tool="gpu_slots.py") as second:
            assert second.wait(timeout=30) == 0  # while the first still holds its slot
        assert release(first) == 0
    assert job_record(tmp_path, "first")["cuda_visible"] == "0"
    assert job_record(tmp_path, "second")["cuda_visible"] == "1"


def test_slots_cli_second_claimant_waits_for_the_only_slot(tmp_path: Path) -> None:
    env = slot_env(CHARGPT_FAKE_GPUS="0")
    with start_slot_job(tmp_path, "first", env, HOLD, tool="gpu_slots.py") as first:
        wait_until_it_runs(first)
        with start_slot_job(tmp_path, "second", env, 0, tool="gpu_slots.py") as second:
            assert release(first) == 0
            assert second.wait(timeout=30) == 0
    first_job, second_job = job_record(tmp_path, "first"), job_record(tmp_path, "second")
    assert first_job["cuda_visible"] == second_job["cuda_visible"] == "0"
    assert second_job["start"] >= first_job["end"]


@pytest.mark.parametrize("tool", ["supervisor.py", "gpu_slots.py"])
def test_tools_alone_pass_on_the_exit_code_and_say_why_a_command_cannot_run(
    tmp_path: Path, tool: str
) -> None:
    def run(*command: str) -> subprocess.CompletedProcess[str]:
        argv = [*wrapper_argv(tool, tmp_path), "--", *command]
        env = slot_env(CHARGPT_FAKE_GPUS="0")
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)

    assert run(sys.executable, "-c", "raise SystemExit(3)").returncode == 3
    missing = run("no-such-command")
    assert missing.returncode == 127
    assert missing.stderr == f"{tool}: error: cannot run 'no-such-command': command not found\n"


@pytest.mark.parametrize("tool", ["supervisor.py", "gpu_slots.py"])
def test_tools_alone_stop_the_job_and_its_children_on_a_stop_signal(
    tmp_path: Path, pids: list[int], tool: str
) -> None:
    wrapper = start_tree_job(tmp_path, pids, "sleep", tool=tool)
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(timeout=10) == 128 + signal.SIGTERM
    assert still_running(pids) == []


def test_sampler_cli_samples_while_the_process_runs_and_writes(
    tmp_path: Path, pids: list[int]
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    ) as job:
        argv = [sys.executable, str(SCRIPTS / "nvml_sampler.py"), "--pid", str(job.pid)]
        sampler = subprocess.Popen([*argv, "--out-prefix", str(tmp_path / "x")])
        pids.extend((job.pid, sampler.pid))
    # The job has ended (its stdin closed) and was reaped: the sampler stops and writes.
    assert sampler.wait(timeout=30) == 0
    summary = json.loads((tmp_path / "x.json").read_text())
    assert summary["gpu_available"] is real_nvml_present(), summary["reason"]
    assert "exit_code" not in summary  # gpu_monitor.py's fields only come with a command
    assert (tmp_path / "x.csv").read_text().startswith("t_s,")
