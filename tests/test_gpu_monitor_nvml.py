"""In-process tests of the sampling (workflow/scripts/nvml_sampler.py) and of the device list
of workflow/scripts/gpu_slots.py, on FakeNvml.

FakeNvml is a scripted stand-in for pynvml: every number it returns is made up by the test,
none is a measurement. The command lines are tested with real processes in test_gpu_monitor.py.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from gpu_slots import FAKE_GPUS_SOURCE, choose_device, machine_devices
from nvml_sampler import DEVICE_MINUS_BASELINE, PROCESS_LIST, GpuMonitor

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
