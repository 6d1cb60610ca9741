"""Tests of workflow/scripts/gpu_monitor.py.

Most tests drive the monitor with FakeNvml, a scripted stand-in for pynvml: every number it
returns is made up by the test, none is a measurement. The CLI tests at the end run the real
pynvml, which on a machine without an NVIDIA driver must fail softly; the GPU slot tests among
them use CHARGPT_FAKE_GPUS, a FAKE device list, so that they need no GPU. The tests of signals,
process trees and failures to run or to write use real processes, signals and folders.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pynvml
import pytest

from gpu_monitor import (
    DEVICE_MINUS_BASELINE,
    FAKE_GPUS_SOURCE,
    PROCESS_LIST,
    GpuMonitor,
    choose_device,
    machine_devices,
)

SCRIPT = Path(__file__).resolve().parents[1] / "workflow" / "scripts" / "gpu_monitor.py"
GIB = 1024**3
MIB = 1024**2
JOB_PID = os.getpid()
FOREIGN_PID = 4_000_001  # above Linux's largest PID, so never in the job's process tree

# A script gives the value of one NVML reading from (number of earlier calls, seconds since
# nvmlInit). Returning an exception makes the fake raise it, as NVML would.
Script = Callable[[int, float], Any]


def constant(value: Any) -> Script:
    return lambda _call, _t: value


# What FakeNvml plays unless a test says otherwise, keyed by the reading.
DEFAULT_SCRIPTS: dict[str, Script] = {
    "memory": constant(GIB),  # device memory used, bytes
    "processes": constant([(JOB_PID, 512 * MIB)]),  # compute processes: (pid, usedGpuMemory)
    "utilization": constant((50, 20)),  # (gpu %, memory %)
    "power": constant(100_000),  # milliwatts
    "temperature": constant(60),  # degrees C
    "energy": lambda call, _t: 1_000_000 + 5_000 * call,  # cumulative millijoules
}


class FakeNvml:
    """FAKE NVML backend for tests: replays scripted series, never measures anything.

    It offers the pynvml functions GpuMonitor uses, reuses pynvml's error classes, counts
    every call in `calls` and remembers how the device was opened in `opened_by`.
    """

    NVMLError = pynvml.NVMLError
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU

    def __init__(self, **scripts: Script) -> None:
        assert scripts.keys() <= DEFAULT_SCRIPTS.keys(), "unknown reading"
        self.scripts = {**DEFAULT_SCRIPTS, **scripts}
        self.devices = (("Fake A", "GPU-aaaa"), ("Fake B", "GPU-bbbb"))  # (name, uuid)
        self.calls: Counter[str] = Counter()
        self.opened_by: tuple[str, int | str] | None = None
        self._t0 = 0.0

    def _play(self, name: str) -> Any:
        call = self.calls[name]
        self.calls[name] += 1
        value = self.scripts[name](call, time.monotonic() - self._t0)
        if isinstance(value, BaseException):
            raise value
        return value

    def nvmlInit(self) -> None:
        self.calls["init"] += 1
        self._t0 = time.monotonic()

    def nvmlShutdown(self) -> None:
        self.calls["shutdown"] += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "999.99"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self.opened_by = ("index", index)
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> int:
        self.opened_by = ("uuid", uuid)
        for index, (_name, device_uuid) in enumerate(self.devices):
            if device_uuid == uuid:
                return index
        raise pynvml.NVMLError_NotFound()

    def nvmlDeviceGetName(self, handle: int) -> str:
        return self.devices[handle][0]

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return self.devices[handle][1]

    def nvmlDeviceGetMemoryInfo(self, _handle: int) -> SimpleNamespace:
        used = self._play("memory")
        return SimpleNamespace(total=80 * GIB, used=used, free=80 * GIB - used)

    def nvmlDeviceGetComputeRunningProcesses(self, _handle: int) -> list[SimpleNamespace]:
        entries = self._play("processes")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in entries]

    def nvmlDeviceGetUtilizationRates(self, _handle: int) -> SimpleNamespace:
        gpu, memory = self._play("utilization")
        return SimpleNamespace(gpu=gpu, memory=memory)

    def nvmlDeviceGetPowerUsage(self, _handle: int) -> int:
        return self._play("power")

    def nvmlDeviceGetTemperature(self, _handle: int, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._play("temperature")

    def nvmlDeviceGetTotalEnergyConsumption(self, _handle: int) -> int:
        return self._play("energy")


def fast_monitor(fake: FakeNvml, **kwargs: Any) -> GpuMonitor:
    """A monitor on `fake` that samples often enough for tests of a fraction of a second."""
    kwargs = {"memory_interval": 0.002, "slow_interval": 0.01, **kwargs}
    return GpuMonitor(pid=JOB_PID, nvml=fake, **kwargs)


def run_until(fake: FakeNvml, memory_calls: int = 0, seconds: float = 0.0, **kwargs: Any) -> dict:
    """Sample until the fake saw `memory_calls` memory reads and `seconds` passed; summarise."""
    monitor = fast_monitor(fake, **kwargs)
    monitor.start()
    started = time.monotonic()
    while fake.calls["memory"] < memory_calls or time.monotonic() - started < seconds:
        assert time.monotonic() - started < 5, "the sampler stalled"
        time.sleep(0.001)
    return monitor.stop()


@pytest.fixture(autouse=True)
def no_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Device choice must not depend on the environment the tests happen to run in."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_normal_run_reads_every_metric() -> None:
    fake = FakeNvml()
    summary = run_until(fake, memory_calls=30)
    assert summary["gpu_available"] is True
    assert summary["reason"] is None
    assert summary["device"] == {
        "index": 0,
        "name": "Fake A",
        "uuid": "GPU-aaaa",
        "driver_version": "999.99",
    }
    assert summary["samples"] >= 29  # the first memory read is the baseline
    assert summary["achieved_memory_interval_s"] > 0
    # The sampling thread's CPU time (spent on the fake here): some, and less than it lived.
    assert 0 < summary["sampling_cpu_s"] < summary["wall_time_s"]
    assert summary["job_memory_source"] == PROCESS_LIST
    assert summary["peak_job_memory_bytes"] == 512 * MIB
    assert summary["peak_device_used_bytes"] == summary["baseline_device_used_bytes"] == GIB
    assert summary["mean_gpu_utilization_pct"] == summary["max_gpu_utilization_pct"] == 50
    assert summary["max_power_w"] == 100.0
    assert summary["max_temperature_c"] == 60
    assert summary["energy_j"] == 5.0  # two counter reads, 5000 mJ apart
    assert summary["unsupported_metrics"] == []
    assert summary["sampling_error"] is None
    assert "lower bound" in summary["note"]


def test_one_high_sample_in_the_middle_is_the_peak() -> None:
    # Call 0 is the baseline, so call 10 is the tenth sample.
    fake = FakeNvml(memory=lambda call, _t: 9 * GIB if call == 10 else GIB)
    summary = run_until(fake, memory_calls=20)
    assert summary["peak_device_used_bytes"] == 9 * GIB


def test_short_spike_in_time_is_caught_by_fast_sampling(tmp_path: Path) -> None:
    def spiking(low: Any, high: Any) -> Script:
        return lambda _call, t: high if 0.10 <= t < 0.15 else low

    fake = FakeNvml(
        memory=spiking(GIB, 8 * GIB),
        processes=spiking([(JOB_PID, 512 * MIB)], [(JOB_PID, 7 * GIB)]),
    )
    monitor = fast_monitor(fake, memory_interval=0.005)
    monitor.start()
    time.sleep(0.25)
    summary = monitor.stop()
    monitor.write(tmp_path / "spike")
    assert summary["peak_device_used_bytes"] == 8 * GIB
    assert summary["peak_job_memory_bytes"] == 7 * GIB
    with open(tmp_path / "spike.csv", newline="") as handle:
        job = [int(row["job_used_bytes"]) for row in csv.DictReader(handle)]
    assert max(job) == 7 * GIB
    assert job[0] == job[-1] == 512 * MIB


def test_entries_without_memory_figure_are_skipped_and_counted() -> None:
    fake = FakeNvml(
        processes=constant([(JOB_PID, None), (JOB_PID, 300 * MIB), (FOREIGN_PID, None)])
    )
    summary = run_until(fake, memory_calls=10)
    assert summary["peak_job_memory_bytes"] == 300 * MIB
    assert summary["job_memory_source"] == PROCESS_LIST
    # One job entry without a figure per sample; the foreign one is not the job's.
    assert summary["none_memory_entries"] == summary["samples"] == fake.calls["processes"]


def test_foreign_pids_only_falls_back_to_device_used_minus_baseline() -> None:
    fake = FakeNvml(
        memory=lambda call, _t: GIB if call == 0 else 3 * GIB,
        processes=constant([(FOREIGN_PID, 5 * GIB)]),
    )
    summary = run_until(fake, memory_calls=10)
    assert summary["job_memory_source"] == DEVICE_MINUS_BASELINE
    assert summary["baseline_device_used_bytes"] == GIB
    assert summary["peak_job_memory_bytes"] == 2 * GIB


def test_power_and_temperature_not_supported_are_switched_off(tmp_path: Path) -> None:
    fake = FakeNvml(
        power=constant(pynvml.NVMLError_NotSupported()),
        temperature=constant(pynvml.NVMLError_NotSupported()),
    )
    monitor = fast_monitor(fake)
    monitor.start()
    time.sleep(0.05)
    summary = monitor.stop()
    monitor.write(tmp_path / "m")
    assert summary["unsupported_metrics"] == ["power", "temperature"]
    assert summary["sampling_error"] is None
    assert summary["max_power_w"] is None
    assert summary["max_temperature_c"] is None
    assert summary["max_gpu_utilization_pct"] == 50
    assert fake.calls["power"] == fake.calls["temperature"] == 1  # never asked again
    with open(tmp_path / "m.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == summary["samples"]
    assert all(row["power_w"] == row["temperature_c"] == "" for row in rows)
    assert any(row["gpu_util_pct"] == "50" for row in rows)


def test_nvml_error_mid_run_stops_sampling_and_keeps_samples() -> None:
    fake = FakeNvml(memory=lambda call, _t: pynvml.NVMLError_GpuIsLost() if call == 6 else GIB)
    summary = run_until(fake, memory_calls=7, seconds=0.03)
    assert fake.calls["memory"] == 7  # nothing was read after the error
    assert summary["samples"] == 5  # calls 1 to 5; call 0 was the baseline
    assert summary["peak_device_used_bytes"] == GIB
    assert summary["sampling_error"] == "NVMLError_GpuIsLost: GPU is lost"
    assert fake.calls["shutdown"] == 1


@pytest.mark.parametrize(
    "fake",
    [
        FakeNvml(),
        FakeNvml(memory=lambda call, _t: pynvml.NVMLError_Unknown() if call >= 3 else GIB),
        FakeNvml(energy=lambda call, _t: pynvml.NVMLError_GpuIsLost() if call else 0),
    ],
    ids=["normal", "error-while-sampling", "error-in-stop"],
)
def test_shutdown_is_always_called(fake: FakeNvml) -> None:
    run_until(fake, seconds=0.01)
    assert fake.calls["init"] == fake.calls["shutdown"] == 1


def test_shutdown_is_called_when_the_device_cannot_be_opened() -> None:
    fake = FakeNvml()
    summary = run_until(fake, device_uuid="GPU-missing")
    assert summary["gpu_available"] is False
    assert summary["reason"] == "Not Found"
    assert fake.calls["shutdown"] == 1


def test_context_manager_shuts_down_when_the_job_fails(tmp_path: Path) -> None:
    fake = FakeNvml()
    with pytest.raises(ZeroDivisionError), fast_monitor(fake) as monitor:
        time.sleep(0.01)
        _ = 1 / 0
    assert fake.calls["shutdown"] == 1
    monitor.write(tmp_path / "sub" / "m", {"exit_code": 1})
    assert sorted(path.name for path in (tmp_path / "sub").iterdir()) == ["m.csv", "m.json"]
    assert json.loads((tmp_path / "sub" / "m.json").read_text())["exit_code"] == 1


def test_device_is_chosen_by_uuid_from_cuda_visible_devices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb,GPU-aaaa")
    fake = FakeNvml()
    summary = run_until(fake, seconds=0.01)
    assert fake.opened_by == ("uuid", "GPU-bbbb")
    assert summary["device"]["name"] == "Fake B"
    assert summary["device"]["index"] is None


@pytest.mark.parametrize(
    ("device_uuid", "cuda_visible", "expected"),
    [
        (None, None, (0, None)),
        (None, "2,0", (2, None)),
        (None, " GPU-bbbb , GPU-aaaa", (None, "GPU-bbbb")),
        (None, "MIG-1234", (None, "MIG-1234")),
        ("GPU-aaaa", "1", (None, "GPU-aaaa")),
    ],
)
def test_choose_device(
    device_uuid: str | None, cuda_visible: str | None, expected: tuple[int | None, str | None]
) -> None:
    assert choose_device(device_uuid, cuda_visible) == expected


@pytest.mark.parametrize("cuda_visible", ["", "-1", "NoDevFiles"])
def test_hidden_gpus_make_the_monitor_unavailable(
    cuda_visible: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", cuda_visible)
    fake = FakeNvml()
    summary = run_until(fake)
    assert summary["gpu_available"] is False
    assert "CUDA_VISIBLE_DEVICES" in summary["reason"]
    assert fake.calls["shutdown"] == 1


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, (["0", "1"], "nvml")),
        ({"CUDA_VISIBLE_DEVICES": " GPU-bbbb , 1"}, (["GPU-bbbb", "1"], "CUDA_VISIBLE_DEVICES")),
        ({"CUDA_VISIBLE_DEVICES": "1,-1,0"}, (["1"], "CUDA_VISIBLE_DEVICES")),
        ({"CUDA_VISIBLE_DEVICES": ""}, ([], "CUDA_VISIBLE_DEVICES")),
        ({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, ([], "CUDA_VISIBLE_DEVICES")),
        ({"CHARGPT_FAKE_GPUS": "0,1", "CUDA_VISIBLE_DEVICES": "3"}, (["0", "1"], FAKE_GPUS_SOURCE)),
    ],
)
def test_machine_devices(environ: dict[str, str], expected: tuple[list[str], str | None]) -> None:
    fake = FakeNvml()
    assert machine_devices(environ, fake) == expected
    # NVML is asked only when no list is given, and then closed again.
    assert fake.calls["init"] == fake.calls["shutdown"] == (not environ)


# --- the real pynvml, through the command line ----------------------------------------------


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


def still_running(pids: list[int], within: float = 2.0) -> list[int]:
    """Those of `pids` that still run after waiting up to `within` seconds for them to end."""
    deadline = time.monotonic() + within
    while any(map(is_running, pids)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return list(filter(is_running, pids))


def start_tree_job(
    tmp_path: Path, pids: list[int], mode: str, *options: str
) -> subprocess.Popen[bytes]:
    """Start the wrapper (with `options`) around TREE_JOB; return once the job's tree runs.

    Adds the PIDs of the wrapper, the job and its child to `pids`."""
    pid_file = tmp_path / "job.pids"
    argv = [
        *(sys.executable, str(SCRIPT), *options, "--out-prefix", str(tmp_path / "x"), "--"),
        *(sys.executable, "-c", TREE_JOB, str(pid_file), mode),
    ]
    wrapper = subprocess.Popen(argv)
    pids.append(wrapper.pid)
    deadline = time.monotonic() + 20
    while not pid_file.exists():
        ended = wrapper.poll() is not None and not pid_file.exists()
        assert not ended, f"the wrapper ended with {wrapper.returncode} before its job started"
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.01)
    pids.extend(int(pid) for pid in pid_file.read_text().split())
    return wrapper


def test_cli_job_and_its_children_die_with_a_killed_wrapper(
    tmp_path: Path, pids: list[int]
) -> None:
    wrapper = start_tree_job(tmp_path, pids, "sleep")
    wrapper.send_signal(signal.SIGKILL)
    assert wrapper.wait(timeout=10) == -signal.SIGKILL
    assert still_running(pids) == []


@pytest.mark.parametrize(
    "stop", [signal.SIGHUP, signal.SIGINT, signal.SIGTERM], ids=lambda stop: stop.name
)
def test_cli_stop_signal_stops_the_job_and_its_children_and_still_writes(
    tmp_path: Path, pids: list[int], stop: signal.Signals
) -> None:
    wrapper = start_tree_job(tmp_path, pids, "sleep")
    started = time.monotonic()
    wrapper.send_signal(stop)
    assert wrapper.wait(timeout=10) == 128 + stop
    assert time.monotonic() - started < 5
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
    assert 0.5 <= time.monotonic() - started < 5
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
    assert result.stderr == f"gpu_monitor.py: error: {error}\n"
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

# The job prints its PID once it runs, sleeps argv[2] seconds, then writes to the file argv[1]
# the CUDA_VISIBLE_DEVICES it was given and when it ran (time.time, comparable across processes).
SLOT_JOB = """
import json, os, sys, time
start = time.time()
print(os.getpid(), flush=True)
time.sleep(float(sys.argv[2]))
seen = {"cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time()}
with open(sys.argv[1], "w") as handle:
    json.dump(seen, handle)
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
    tmp_path: Path, name: str, env: dict[str, str], seconds: float, gpus: int = 1
) -> subprocess.Popen[str]:
    """Start the wrapper with --slot-dir tmp_path/slots around SLOT_JOB; stdout is piped."""
    argv = [
        *(sys.executable, str(SCRIPT), "--out-prefix", str(tmp_path / name)),
        *("--slot-dir", str(tmp_path / "slots"), "--gpus", str(gpus), "--"),
        *(sys.executable, "-c", SLOT_JOB, str(tmp_path / f"{name}.job.json"), str(seconds)),
    ]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)


def finish(tmp_path: Path, name: str, wrapper: subprocess.Popen[str]) -> tuple[dict, dict]:
    """Wait for the wrapper; return its gpu_slot record and what its job saw."""
    assert wrapper.wait(timeout=30) == 0
    summary = json.loads((tmp_path / f"{name}.json").read_text())
    return summary["gpu_slot"], json.loads((tmp_path / f"{name}.job.json").read_text())


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
    wrappers = {name: start_slot_job(tmp_path, name, env, seconds=1.0) for name in names[:2]}
    for wrapper in wrappers.values():
        assert wrapper.stdout is not None
        assert wrapper.stdout.readline().strip().isdigit()  # both jobs are running
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
    assert slots["a"]["waited_s"] < 0.1 and slots["b"]["waited_s"] < 0.1
    # c found both devices taken, waited, then ran only after the job on its device ended.
    assert slots["c"]["waited_s"] > 0.1
    holder = next(name for name in "ab" if slots[name]["device"] == slots["c"]["device"])
    assert jobs["c"]["start"] >= jobs[holder]["end"]
    assert sorted(path.name for path in (tmp_path / "slots").iterdir()) == [
        "gpu-0.lock",
        "gpu-1.lock",
    ]


def test_cli_multi_gpu_job_takes_all_its_devices_or_waits_for_them(tmp_path: Path) -> None:
    env = slot_env(CHARGPT_FAKE_GPUS="0,1")
    with start_slot_job(tmp_path, "one", env, seconds=1.0) as one:
        assert one.stdout is not None and one.stdout.readline().strip().isdigit()
        with start_slot_job(tmp_path, "pair", env, seconds=0.0, gpus=2) as pair:
            _, one_job = finish(tmp_path, "one", one)
            pair_slot, pair_job = finish(tmp_path, "pair", pair)
    assert pair_slot["device"] == pair_job["cuda_visible"] == "0,1"
    # One device was free all along; the pair started only once both were.
    assert pair_slot["waited_s"] > 0.1
    assert pair_job["start"] >= one_job["end"]
    assert not is_locked(tmp_path / "slots" / "gpu-0.lock")


def test_cli_job_needing_more_gpus_than_the_machine_has_is_refused(tmp_path: Path) -> None:
    env = slot_env(CHARGPT_FAKE_GPUS="0,1")
    with start_slot_job(tmp_path, "big", env, seconds=0.0, gpus=3) as wrapper:
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
        with start_slot_job(tmp_path, "next", env, seconds=0) as after:
            slot, job = finish(tmp_path, "next", after)
    assert slot["device"] == job["cuda_visible"] == "0"
    assert slot["waited_s"] < 0.1
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
