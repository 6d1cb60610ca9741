"""Sample one GPU through NVML while a command (or a block of code) runs.

Command line: wrap any command, sample the GPU while it runs, write the results, and exit
with the command's exit code (a command killed by signal N gives 128 + N)::

    python workflow/scripts/gpu_monitor.py --out-prefix results/run1/monitor/train \\
        [--memory-interval 0.05] [--slow-interval 0.5] [--device-uuid GPU-...] \\
        [--slot-dir .snakemake/gpu-slots] [--kill-after 10] -- python project/run.py train ...

The command dies with the wrapper. It runs in a process group of its own, whose leader, a
small guard process, SIGKILLs the whole group (the command's children too, unless they leave
it) once the wrapper has ended, however it ended; on Linux the kernel also SIGKILLs the
command itself the moment the wrapper dies (PR_SET_PDEATHSIG). Being in its own group, the
command gets no signal meant for a terminal's foreground group (Ctrl-C), and must not read
from a terminal. SIGTERM, SIGHUP or SIGINT to the wrapper sends SIGTERM to the group, then
SIGKILL if the command still runs --kill-after seconds later; the results are written and the
wrapper exits with 128 + the number of the signal it got.

Exit codes: the command's own (128 + N for signal N); 128 + N when the wrapper was stopped by
signal N; 127 when the command was not found, 126 when it could not be executed (the results
are still written, with the reason); 2 when the folder of --out-prefix cannot be written
(checked before the command runs, which then does not run; also for bad arguments, and
for --gpus N above the machine's GPU count). When the
results cannot be written at the end (a full disk), the wrapper says so in one line and exits
with the command's code if that is not 0, else 1.

GPU slots (``--slot-dir DIR``): with ``snakemake --resources gpu=N`` up to N jobs run at once
and Snakemake does not say which GPU each may use, so the wrapper claims one itself. The
machine's devices are the entries of the wrapper's own CUDA_VISIBLE_DEVICES if it is set
("", "-1", "NoDevFiles" leave none), else NVML indices 0..count-1, else none. The wrapper takes
the first device whose lock file ``DIR/gpu-<device>.lock`` it can flock exclusively, polling
every 0.2 s while all are taken, holds it until it exits (the kernel frees it even after
SIGKILL), and runs the command with CUDA_VISIBLE_DEVICES set to that device, which is also the
one sampled. ``--gpus N`` claims N devices at once (a multi-GPU job), all of them or none
while it waits, and names all N in CUDA_VISIBLE_DEVICES; the first is sampled. With no device
nothing is locked and the environment is left alone. For tests
without a GPU, CHARGPT_FAKE_GPUS (e.g. "0,1") replaces the device list with a FAKE one.

In process::

    with GpuMonitor(pid=os.getpid()) as monitor:
        train()
    monitor.write("results/run1/monitor/train")

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
    command, exit_code          (CLI only) the wrapped command (argv list) and the wrapper's
                                exit code (see "Exit codes" above)
    error                       (CLI only) null, or one line: why the command could not run
                                ("cannot run 'x': command not found"), or which signal
                                stopped the wrapper and the exit code the command then had
    gpu_slot                    (CLI only) null without --slot-dir, else
                                {device, source, waited_s, slot_dir}: the device entry (with
                                --gpus N, N entries joined by commas) the job was given (null
                                when the machine has no GPU, so no slot was taken);
                                source, where the device list came from:
                                "CUDA_VISIBLE_DEVICES", "nvml", "fake (CHARGPT_FAKE_GPUS)" (a
                                made-up list, no real device), or null when there was none;
                                waited_s, seconds spent waiting for a free slot
    wall_time_s                 monitor start to stop
    samples                     number of memory samples (CSV rows)
    memory_interval_s           requested memory sampling interval
    achieved_memory_interval_s  median gap between memory samples actually taken
    slow_interval_s             requested interval for utilisation, power, temperature
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
import ctypes
import errno
import fcntl
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
import pynvml

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
FAKE_GPUS_VARIABLE = "CHARGPT_FAKE_GPUS"
FAKE_GPUS_SOURCE = f"fake ({FAKE_GPUS_VARIABLE})"
SLOT_POLL_S = 0.2
PROG = "gpu_monitor.py"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
KILL_AFTER_S = 10.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# The leader of the command's process group (see _process_group): it ignores the stop signals
# that the group is sent, says it is ready, waits for EOF on stdin, then kills its group.
GUARD_CODE = """\
import os, signal, sys
for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(number, signal.SIG_IGN)
print(flush=True)
sys.stdin.buffer.read()
os.kill(0, signal.SIGKILL)
"""


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
        _write_atomic(prefix.with_name(prefix.name + ".csv"), self._csv_text())
        summary = {**self.summary, **(extra or {})}
        _write_atomic(prefix.with_name(prefix.name + ".json"), json.dumps(summary, indent=2) + "\n")

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


def choose_device(
    device_uuid: str | None, cuda_visible: str | None
) -> tuple[int | None, str | None]:
    """Return (NVML index, UUID) of the device to watch; exactly one of them is set.

    NVML ignores CUDA_VISIBLE_DEVICES, so the job's first visible device is found here:
    an explicit UUID wins, then the first CUDA_VISIBLE_DEVICES entry, then index 0.
    Raises LookupError when CUDA_VISIBLE_DEVICES hides every GPU ("", "-1", "NoDevFiles").
    """
    if device_uuid:
        return None, device_uuid
    if cuda_visible is None:
        return 0, None
    first = cuda_visible.split(",")[0].strip()
    if first.isdigit():
        # Caveat: CUDA numbers devices fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, while
        # NVML numbers them by PCI bus, so on a mixed machine an index can name another GPU.
        # UUIDs in CUDA_VISIBLE_DEVICES avoid this.
        return int(first), None
    if not first.startswith(("GPU-", "MIG-")):
        raise LookupError(f"CUDA_VISIBLE_DEVICES={cuda_visible!r} leaves the job no GPU")
    # "GPU-..." or "MIG-..."; NVML needs the full UUID, not the prefix CUDA also accepts.
    return None, first


def machine_devices(environ: Mapping[str, str], nvml: Any = pynvml) -> tuple[list[str], str | None]:
    """Return this machine's GPUs as CUDA_VISIBLE_DEVICES entries, and where the list came from.

    CHARGPT_FAKE_GPUS (a fake list for tests) wins, then CUDA_VISIBLE_DEVICES, then NVML's
    device count; ([], None) when there is none of these.
    """
    if FAKE_GPUS_VARIABLE in environ:
        return _device_entries(environ[FAKE_GPUS_VARIABLE]), FAKE_GPUS_SOURCE
    if "CUDA_VISIBLE_DEVICES" in environ:
        return _device_entries(environ["CUDA_VISIBLE_DEVICES"]), "CUDA_VISIBLE_DEVICES"
    try:
        nvml.nvmlInit()
    except nvml.NVMLError:
        return [], None
    try:
        return [str(index) for index in range(nvml.nvmlDeviceGetCount())], "nvml"
    finally:
        nvml.nvmlShutdown()


def _device_entries(value: str) -> list[str]:
    """The devices a CUDA_VISIBLE_DEVICES value lists, up to (like CUDA) the first entry that
    names none, such as "", "-1" or "NoDevFiles"."""
    entries = (entry.strip() for entry in value.split(","))
    return list(itertools.takewhile(_is_device_entry, entries))


def _is_device_entry(entry: str) -> bool:
    return entry.isdigit() or entry.startswith(("GPU-", "MIG-"))


class SlotError(RuntimeError):
    """The job needs more GPUs than this machine has."""


def take_gpu_slot(slot_dir: Path, environ: Mapping[str, str], count: int = 1) -> dict[str, Any]:
    """Claim `count` free devices of this machine until this process exits; return the
    gpu_slot record.

    Waits while fewer than `count` are free (holding none meanwhile, so that two jobs cannot
    each hold a part). With no device nothing is claimed and device is None.
    """
    devices, source = machine_devices(environ)
    if devices and count > len(devices):
        raise SlotError(
            f"the job needs {count} GPUs but this machine has {len(devices)} ({source}); "
            "lower train.devices"
        )
    slot_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    held: list[str] = []
    while devices:
        held = _lock_slots(slot_dir, devices, count)
        if held:
            break
        time.sleep(SLOT_POLL_S)
    return {
        "device": ",".join(held) or None,
        "source": source,
        "waited_s": time.monotonic() - started,
        "slot_dir": str(slot_dir),
    }


def _lock_slots(slot_dir: Path, devices: list[str], count: int) -> list[str]:
    """Lock `count` free devices' slot files for the rest of this process's life; none (an
    empty list) unless all `count` could be had.
    """
    held: dict[str, int] = {}
    for device in devices:
        # Old MIG entries look like "MIG-GPU-<uuid>/1/0"; a slash cannot be in a file name.
        path = slot_dir / f"gpu-{device.replace('/', '_')}.lock"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        held[device] = fd
        if len(held) == count:
            # The descriptors stay open on purpose: the locks last until this process ends,
            # however it ends. os.open descriptors are not inherited by the job.
            return list(held)
    for fd in held.values():
        os.close(fd)
    return []


def _max(values: Iterable[Any]) -> Any:
    """Largest value that is not None, or None if there is none."""
    present = [value for value in values if value is not None]
    return max(present) if present else None


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename it over `path` in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=path.name + ".", suffix=".tmp", delete=False
    ) as handle:
        handle.write(text)
    os.replace(handle.name, path)


def run_child(command: list[str], kill_after: float = KILL_AFTER_S) -> tuple[int, str | None]:
    """Run `command` in a process group of its own; return (exit code, error).

    The exit code is the command's own, 128 + N if signal N ended it, 127 if it was not found,
    126 if it could not be executed, or 128 + N if this process was sent the stop signal N
    (SIGTERM, SIGHUP, SIGINT). Then the whole group gets SIGTERM, and SIGKILL if the command
    still runs `kill_after` seconds later. error: None, else one line saying why the command
    did not run or was stopped. Whatever the outcome, the group is SIGKILLed on return, so
    nothing the command left running outlives it (see _process_group).
    """
    stop_signals: list[int] = []
    with _process_group() as group:
        timer = threading.Timer(kill_after, os.killpg, (group, signal.SIGKILL))

        def stop(signum: int, _frame: object) -> None:
            # A scheduler or a terminal signals only this wrapper (the command's group is not
            # the terminal's foreground group): pass it on, then wait for the command as usual,
            # so that the results are still written. Only the first stop signal acts.
            if not stop_signals:
                os.killpg(group, signal.SIGTERM)
                timer.start()
            stop_signals.append(signum)

        previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
        try:
            if os.sep not in command[0] and shutil.which(command[0]) is None:
                # Searched as a shell does: exec would report a PATH folder that it may not
                # search (EACCES) rather than the missing command.
                raise FileNotFoundError(errno.ENOENT, "command not found")
            child = subprocess.Popen(
                command, process_group=group, preexec_fn=_die_with_parent_hook()
            )
            returncode = child.wait()
        except OSError as err:
            exit_code = 127 if isinstance(err, FileNotFoundError) else 126
            return exit_code, f"cannot run {command[0]!r}: {err.strerror}"
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            timer.cancel()
    exit_code = 128 - returncode if returncode < 0 else returncode
    if not stop_signals:
        return exit_code, None
    name = signal.Signals(stop_signals[0]).name
    error = f"{name} received: sent SIGTERM to the command, which ended with exit code {exit_code}"
    return 128 + stop_signals[0], error


@contextlib.contextmanager
def _process_group() -> Iterator[int]:
    """Yield the ID of a new process group that is SIGKILLed whole when this process ends.

    Its leader is a guard process (GUARD_CODE) that ignores stop signals and reads a pipe that
    only this process holds open. The pipe ends when the `with` block ends or this process
    dies, however it dies (even by SIGKILL); then the guard kills its group, itself included.
    As the leader lives as long as this process, the group's ID cannot be reused meanwhile.
    """
    guard_argv = [sys.executable, "-I", "-S", "-c", GUARD_CODE]
    with subprocess.Popen(
        guard_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, process_group=0
    ) as guard:
        assert guard.stdout is not None
        guard.stdout.readline()  # it ignores stop signals from now on
        yield guard.pid


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn after which the kernel SIGKILLs the child when this process dies.

    Linux only (prctl PR_SET_PDEATHSIG); None elsewhere. It runs in the forked child before
    exec while the sampling thread may run, so it calls only a libc function found here, in
    the parent: nothing that takes a lock another thread could have held at the fork.
    """
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl: the kernel will not tell
            os.kill(os.getpid(), signal.SIGKILL)

    return die_with_parent


def _check_folder(folder: Path) -> None:
    """Create `folder` if needed and write a file in it; raise OSError if that fails."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass


def _print_error(message: str) -> None:
    """Print one line on stderr; a stderr that is gone (a hung-up terminal) changes nothing."""
    with contextlib.suppress(OSError):
        print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Run a command and sample the GPU meanwhile."
    )
    parser.add_argument("--out-prefix", required=True, type=Path, help="writes PREFIX.csv/.json")
    parser.add_argument("--memory-interval", type=float, default=0.05, help="seconds")
    parser.add_argument("--slow-interval", type=float, default=0.5, help="seconds")
    parser.add_argument("--device-uuid", help="watch this device instead of the job's first one")
    parser.add_argument(
        "--slot-dir", type=Path, help="claim a free GPU through lock files in this folder"
    )
    parser.add_argument(
        "--gpus", type=int, default=1, help="with --slot-dir: how many GPUs the job needs"
    )
    parser.add_argument(
        "--kill-after",
        type=float,
        default=KILL_AFTER_S,
        help="seconds a stopped command gets between SIGTERM and SIGKILL (default %(default)s)",
    )
    parser.add_argument("command", nargs="+", help="the command to run, after --")
    args = parser.parse_args(argv)
    if args.memory_interval <= 0 or args.slow_interval <= 0:
        parser.error("intervals must be positive")
    if args.kill_after < 0:
        parser.error("--kill-after must not be negative")
    if args.gpus < 1:
        parser.error("--gpus must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = args.out_prefix.parent
    try:
        # Before the command runs: once it has, its exit code must not be lost to a bad path.
        _check_folder(folder)
    except OSError as err:
        _print_error(f"cannot write the results in {str(folder)!r}: {err.strerror}")
        return 2
    gpu_slot = None
    if args.slot_dir is not None:
        # Before the monitor starts, so that the wait is not sampled and the baseline is
        # taken once the device is ours.
        try:
            gpu_slot = take_gpu_slot(args.slot_dir, os.environ, args.gpus)
        except SlotError as err:
            _print_error(str(err))
            return 2
        if gpu_slot["device"] is not None:
            # The child inherits it, and the monitor's choose_device reads it.
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu_slot["device"]
    monitor = GpuMonitor(
        memory_interval=args.memory_interval,
        slow_interval=args.slow_interval,
        device_uuid=args.device_uuid,
    )
    # Started before the child, so the baseline is the device without the job; the child is
    # a descendant of this process, so the default pid covers it.
    monitor.start()
    try:
        exit_code, error = run_child(args.command, args.kill_after)
    finally:
        monitor.stop()
    if error is not None:
        _print_error(error)
    extra = {"command": args.command, "exit_code": exit_code, "error": error, "gpu_slot": gpu_slot}
    try:
        monitor.write(args.out_prefix, extra)
    except OSError as err:
        # Say so, but fail with the command's own code when it failed (e.g. a disk full of
        # checkpoints): that is the failure to report.
        _print_error(f"cannot write the results {args.out_prefix}.csv/.json: {err}")
        return exit_code or 1
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
