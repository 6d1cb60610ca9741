"""Sample one GPU through NVML while a job runs.

In process::

    with GpuMonitor(pid=os.getpid()) as monitor:
        train()
    monitor.write("results/run1/monitor/train")

Command line: sample while the process PID and its descendants run, then write the results
(Ctrl-C or SIGTERM stops it early and still writes them)::

    python workflow/scripts/nvml_sampler.py --pid 1234 --out-prefix results/run1/monitor/train \\
        [--memory-interval 0.05] [--slow-interval 0.5] [--device-uuid GPU-...]

gpu_monitor.py runs a command under this sampler and adds fields of its own to the summary.
The device sampled is --device-uuid, else the job's first one (gpu_slots.choose_device).

Outputs (each written to a temporary file, then moved into place with os.replace):

``<prefix>.csv``, one row per memory sample:
    t_s                seconds since the monitor started (time.monotonic)
    device_used_bytes  memory used on the whole device (nvmlDeviceGetMemoryInfo v1 ``used``)
    job_used_bytes     memory used by the job (see ``job_memory_source``)
    gpu_util_pct       share of time a kernel ran, mem_util_pct the same for memory traffic
    power_w            board power draw
    temperature_c      GPU core temperature
The last four are sampled less often; their cells are empty on rows where they were not read.
With no GPU the file holds just the header.

``<prefix>.json``, the summary (null where a figure does not exist):
    gpu_available               whether NVML could be used at all
    reason                      why not (the NVML error text), null when available
    device                      {index, name, uuid, driver_version}; index is null when the
                                device was chosen by UUID
    wall_time_s                 monitor start to stop
    samples                     number of memory samples (CSV rows)
    memory_interval_s           requested memory sampling interval
    achieved_memory_interval_s  median gap between memory samples actually taken
    slow_interval_s             requested interval for utilisation, power, temperature
    sampling_cpu_s              CPU time of the sampling thread (what the monitor costs)
    sampling_cpu_share          sampling_cpu_s / wall_time_s: its share of one core
    peak_job_memory_bytes       highest job memory seen
    job_memory_source           "process_list" (sum of the job's processes in NVML's compute
                                process list) or "device_used_minus_baseline" (that list never
                                gave a figure for a job PID, e.g. behind a container's PID
                                namespace)
    peak_device_used_bytes      highest device memory used seen
    baseline_device_used_bytes  device memory used before the job started
    mean_gpu_utilization_pct    mean of the utilisation samples
    max_gpu_utilization_pct     highest utilisation sample
    max_power_w                 highest power sample
    max_temperature_c           highest temperature sample
    energy_j                    total energy counter at stop minus at start
    unsupported_metrics         metrics the device answered "Not Supported" for, then skipped:
                                memory, process_list, utilization, power, temperature, energy
    sampling_error              the NVML error that stopped sampling early, else null
    none_memory_entries         job process entries whose usedGpuMemory was unavailable
    note                        peaks are sampled, so they are lower bounds
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
import pynvml
from harness.io import write_text

from gpu_slots import choose_device

CSV_COLUMNS = (
    "t_s",
    "device_used_bytes",
    "job_used_bytes",
    "gpu_util_pct",
    "mem_util_pct",
    "power_w",
    "temperature_c",
)
PEAK_NOTE = "peaks are sampled: the true peak may be higher (a lower bound)"
PROCESS_LIST = "process_list"
DEVICE_MINUS_BASELINE = "device_used_minus_baseline"


@dataclass
class Sample:
    """One row of the time series; the slow metrics are None on rows where they were not read."""

    t_s: float
    device_used_bytes: int | None
    # Sum over the job's entries in the compute process list; None when none of them had a figure.
    process_job_bytes: int | None
    gpu_util_pct: int | None = None
    mem_util_pct: int | None = None
    power_w: float | None = None
    temperature_c: int | None = None


class GpuMonitor:
    """Samples one GPU in a background thread between start() and stop().

    `pid` is the job: that process and its descendants. The default, this process, suits both
    in-process use and a wrapper that starts the job as a child after start(). `nvml` is any
    object with the pynvml functions and error classes used here (tests pass a fake).
    """

    def __init__(
        self,
        pid: int | None = None,
        memory_interval: float = 0.05,
        slow_interval: float = 0.5,
        device_uuid: str | None = None,
        nvml: Any = pynvml,
    ) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.memory_interval = memory_interval
        self.slow_interval = slow_interval
        self.device_uuid = device_uuid
        self.summary: dict[str, Any] | None = None
        self._nvml = nvml
        self._handle: Any = None
        self._device: dict[str, Any] | None = None
        self._reason: str | None = None
        self._baseline_used: int | None = None
        self._energy_start_mj: int | None = None
        self._samples: list[Sample] = []
        self._unsupported: set[str] = set()
        self._sampling_error: str | None = None
        self._none_memory_entries = 0
        self._job_pids: set[int] = {self.pid}
        self._sampling_cpu_s: float | None = None  # the sampling thread's own CPU time
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def __enter__(self) -> GpuMonitor:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Open NVML, pick the device, take the baselines and start sampling.

        Without a usable GPU this only records why; the caller's work goes on regardless.
        """
        self._t0 = time.monotonic()
        try:
            self._nvml.nvmlInit()
        except self._nvml.NVMLError as err:
            self._reason = str(err)
            return
        try:
            self._open_device()
        except (self._nvml.NVMLError, LookupError) as err:
            self._reason = str(err)
            self._nvml.nvmlShutdown()
            return
        self._thread = threading.Thread(target=self._sample_loop, name="gpu-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        """Stop sampling, close NVML and return the summary (also kept in `self.summary`)."""
        wall_time_s = time.monotonic() - self._t0
        energy_j = None
        if self._thread is not None:
            self._stop_event.set()
            self._thread.join()
            try:
                energy_j = self._energy_since_start()
            except self._nvml.NVMLError as err:
                self._sampling_error = self._sampling_error or _describe(err)
            finally:
                self._nvml.nvmlShutdown()
        self.summary = self._summarise(wall_time_s, energy_j)
        return self.summary

    def write(self, prefix: str | Path, extra: dict[str, Any] | None = None) -> None:
        """Write `<prefix>.csv` and `<prefix>.json` (the summary with `extra` merged in)."""
        if self.summary is None:
            raise RuntimeError("call stop() before write()")
        prefix = Path(prefix)
        write_text(prefix.with_name(prefix.name + ".csv"), self._csv_text())
        summary = {**self.summary, **(extra or {})}
        write_text(prefix.with_name(prefix.name + ".json"), json.dumps(summary, indent=2) + "\n")

    # --- setup -----------------------------------------------------------------------------

    def _open_device(self) -> None:
        """Find the device and read what must be known before the job touches it."""
        nvml = self._nvml
        index, uuid = choose_device(self.device_uuid, os.environ.get("CUDA_VISIBLE_DEVICES"))
        if uuid is not None:
            self._handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
        else:
            self._handle = nvml.nvmlDeviceGetHandleByIndex(index)
        self._device = {
            "index": index,
            "name": nvml.nvmlDeviceGetName(self._handle),
            "uuid": nvml.nvmlDeviceGetUUID(self._handle),
            "driver_version": nvml.nvmlSystemGetDriverVersion(),
        }
        self._baseline_used = self._read("memory", self._device_used)
        self._energy_start_mj = self._read(
            "energy", nvml.nvmlDeviceGetTotalEnergyConsumption, self._handle
        )

    # --- sampling thread -------------------------------------------------------------------

    def _sample_loop(self) -> None:
        """Take memory samples every memory_interval and slow ones every slow_interval."""
        next_slow = time.monotonic()
        try:
            while not self._stop_event.is_set():
                now = time.monotonic()
                if now >= next_slow:
                    # The job's process tree changes rarely (workers come and go), and walking
                    # it costs milliseconds, so it is refreshed at the slow cadence only.
                    self._refresh_job_pids()
                sample = self._sample_memory(now)
                self._samples.append(sample)
                if now >= next_slow:
                    self._sample_slow(sample)
                    next_slow = now + self.slow_interval
                self._stop_event.wait(max(0.0, now + self.memory_interval - time.monotonic()))
        except Exception as err:
            # An NVML error ends sampling but keeps what was collected. Anything else (a bug)
            # would otherwise die silently with the thread, so it is recorded the same way.
            self._sampling_error = _describe(err)
        finally:
            # What the monitor costs the job's machine: this thread's CPU time.
            self._sampling_cpu_s = time.thread_time()

    def _sample_memory(self, now: float) -> Sample:
        """Read device memory and the job's share of it."""
        return Sample(
            t_s=now - self._t0,
            device_used_bytes=self._read("memory", self._device_used),
            process_job_bytes=self._read("process_list", self._job_bytes_from_process_list),
        )

    def _sample_slow(self, sample: Sample) -> None:
        """Add utilisation, power and temperature to `sample`."""
        nvml = self._nvml
        rates = self._read("utilization", nvml.nvmlDeviceGetUtilizationRates, self._handle)
        if rates is not None:
            sample.gpu_util_pct, sample.mem_util_pct = rates.gpu, rates.memory
        milliwatts = self._read("power", nvml.nvmlDeviceGetPowerUsage, self._handle)
        if milliwatts is not None:
            sample.power_w = milliwatts / 1000
        # nvmlDeviceGetTemperature is marked deprecated in favour of nvmlDeviceGetTemperatureV,
        # which older drivers lack.
        sample.temperature_c = self._read(
            "temperature", nvml.nvmlDeviceGetTemperature, self._handle, nvml.NVML_TEMPERATURE_GPU
        )

    def _read(self, metric: str, function: Callable[..., Any], *args: Any) -> Any:
        """Call one NVML function; on "Not Supported" switch `metric` off and return None.

        Other NVML errors propagate and end the sampling.
        """
        if metric in self._unsupported:
            return None
        try:
            return function(*args)
        except self._nvml.NVMLError_NotSupported:
            self._unsupported.add(metric)
            return None

    def _device_used(self) -> int:
        # Called without a version, pynvml uses v1 (nvmlDeviceGetMemoryInfo). Its `used` counts
        # everything allocated; v2's `used` leaves out memory the driver reserves, so the two
        # differ by a few hundred MiB and v1 is the one that matches "what is taken".
        return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)

    def _job_bytes_from_process_list(self) -> int | None:
        """Sum usedGpuMemory over the job's processes; None when no job entry had a figure."""
        total = None
        for process in self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle):
            if process.pid not in self._job_pids:
                continue
            if process.usedGpuMemory is None:
                # NVML could not say (e.g. Windows WDDM); skip it but keep count.
                self._none_memory_entries += 1
                continue
            total = (total or 0) + process.usedGpuMemory
        return total

    def _refresh_job_pids(self) -> None:
        """The job is self.pid and all its descendants; keep the old set once the job is gone."""
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        self._job_pids = {self.pid, *(child.pid for child in children)}

    def _energy_since_start(self) -> float | None:
        """Joules used since start(), from the device's cumulative energy counter (mJ)."""
        end_mj = self._read("energy", self._nvml.nvmlDeviceGetTotalEnergyConsumption, self._handle)
        if self._energy_start_mj is None or end_mj is None:
            return None
        return (end_mj - self._energy_start_mj) / 1000

    # --- results ---------------------------------------------------------------------------

    def _job_memory_source(self) -> str | None:
        """Use the process list if it ever named the job; else fall back to device minus baseline.

        Inside a container on an older driver NVML reports host PIDs, which never match ours.
        """
        if self._device is None:
            return None
        if any(sample.process_job_bytes is not None for sample in self._samples):
            return PROCESS_LIST
        return DEVICE_MINUS_BASELINE

    def _job_series(self) -> list[int | None]:
        """Job memory per sample, from the source chosen by _job_memory_source."""
        if self._job_memory_source() == PROCESS_LIST:
            # A row without a matching entry means the job held no GPU memory at that moment.
            return [sample.process_job_bytes or 0 for sample in self._samples]
        baseline = self._baseline_used
        return [
            None
            if sample.device_used_bytes is None or baseline is None
            # Other processes may free memory while the job runs; the job never uses less than 0.
            else max(0, sample.device_used_bytes - baseline)
            for sample in self._samples
        ]

    def _summarise(self, wall_time_s: float, energy_j: float | None) -> dict[str, Any]:
        samples = self._samples
        utilisation = [s.gpu_util_pct for s in samples if s.gpu_util_pct is not None]
        times = [s.t_s for s in samples]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        return {
            "gpu_available": self._device is not None,
            "reason": self._reason,
            "device": self._device,
            "wall_time_s": wall_time_s,
            "samples": len(samples),
            "memory_interval_s": self.memory_interval,
            "achieved_memory_interval_s": statistics.median(gaps) if gaps else None,
            "slow_interval_s": self.slow_interval,
            "sampling_cpu_s": self._sampling_cpu_s,
            "sampling_cpu_share": (
                None if self._sampling_cpu_s is None else self._sampling_cpu_s / wall_time_s
            ),
            "peak_job_memory_bytes": _max(self._job_series()),
            "job_memory_source": self._job_memory_source(),
            "peak_device_used_bytes": _max(s.device_used_bytes for s in samples),
            "baseline_device_used_bytes": self._baseline_used,
            "mean_gpu_utilization_pct": statistics.fmean(utilisation) if utilisation else None,
            "max_gpu_utilization_pct": _max(utilisation),
            "max_power_w": _max(s.power_w for s in samples),
            "max_temperature_c": _max(s.temperature_c for s in samples),
            "energy_j": energy_j,
            "unsupported_metrics": sorted(self._unsupported),
            "sampling_error": self._sampling_error,
            "none_memory_entries": self._none_memory_entries,
            "note": PEAK_NOTE,
        }

    def _csv_text(self) -> str:
        lines = [",".join(CSV_COLUMNS)]
        for sample, job_bytes in zip(self._samples, self._job_series(), strict=True):
            row = (
                f"{sample.t_s:.4f}",
                sample.device_used_bytes,
                job_bytes,
                sample.gpu_util_pct,
                sample.mem_util_pct,
                sample.power_w,
                sample.temperature_c,
            )
            lines.append(",".join("" if value is None else str(value) for value in row))
        return "\n".join(lines) + "\n"


def _max(values: Iterable[Any]) -> Any:
    """Largest value that is not None, or None if there is none."""
    present = [value for value in values if value is not None]
    return max(present) if present else None


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --out-prefix, the intervals and --device-uuid (GpuMonitor's settings)."""
    parser.add_argument("--out-prefix", required=True, type=Path, help="writes PREFIX.csv/.json")
    parser.add_argument("--memory-interval", type=float, default=0.05, help="seconds")
    parser.add_argument("--slow-interval", type=float, default=0.5, help="seconds")
    parser.add_argument("--device-uuid", help="watch this device instead of the job's first one")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.memory_interval <= 0 or args.slow_interval <= 0:
        parser.error("intervals must be positive")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sample the GPU while a job runs.")
    add_arguments(parser)
    parser.add_argument("--pid", type=int, required=True, help="the job's process")
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stops it as Ctrl-C does
    monitor = GpuMonitor(args.pid, args.memory_interval, args.slow_interval, args.device_uuid)
    with monitor, contextlib.suppress(psutil.NoSuchProcess, KeyboardInterrupt):
        psutil.Process(args.pid).wait()
    monitor.write(args.out_prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
