"""Claim free GPUs of this machine for a job through lock files: GPU slots.

Command line: take the slots, run the command on them (through supervisor.py, so that it dies
with this process) and exit with its exit code; nothing is sampled, no results are written::

    python workflow/scripts/gpu_slots.py --slot-dir .snakemake/gpu-slots [--gpus 1] \\
        [--kill-after 10] -- python project/run.py train ...

With ``snakemake --resources gpu=N`` up to N jobs run at once and Snakemake does not say
which GPU each may use, so the job claims one itself. The machine's devices are the entries
of this process's CUDA_VISIBLE_DEVICES if it is set ("", "-1", "NoDevFiles" leave none), else
NVML indices 0..count-1, else none. It takes the first device whose lock file
``DIR/gpu-<device>.lock`` it can flock exclusively, polling every 0.2 s while all are taken,
holds it until this process exits (the kernel frees it even after SIGKILL), and runs the
command with CUDA_VISIBLE_DEVICES set to that device. ``--gpus N`` claims N devices at once
(a multi-GPU job), all of them or none while it waits, and names all N in
CUDA_VISIBLE_DEVICES. With no device nothing is locked and the environment is left alone. For
tests without a GPU, CHARGPT_FAKE_GPUS (e.g. "0,1") replaces the device list with a FAKE one.
The job's first device, as NVML names it, is found by choose_device (for nvml_sampler.py).

Exit codes: those of supervisor.py; 2 also for --gpus N above the machine's GPU count.

The record of a claim (take_gpu_slot; gpu_monitor.py writes it as ``gpu_slot``):
    device    the device entry the job was given (with --gpus N, N entries joined by commas),
              null when the machine has no GPU, so no slot was taken
    source    where the device list came from: "CUDA_VISIBLE_DEVICES", "nvml",
              "fake (CHARGPT_FAKE_GPUS)" (a made-up list, no real device), or null when there
              was none
    waited_s  seconds spent waiting for a free slot
    slot_dir  the --slot-dir folder
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import os
import sys
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import pynvml

import supervisor

PROG = Path(__file__).name
FAKE_GPUS_VARIABLE = "CHARGPT_FAKE_GPUS"
FAKE_GPUS_SOURCE = f"fake ({FAKE_GPUS_VARIABLE})"
SLOT_POLL_S = 0.2


class SlotError(RuntimeError):
    """The job needs more GPUs than this machine has."""


def machine_devices(environ: Mapping[str, str], nvml: Any = pynvml) -> tuple[list[str], str | None]:
    """Return this machine's GPUs as CUDA_VISIBLE_DEVICES entries, and where the list came from.

    CHARGPT_FAKE_GPUS (a fake list for tests) wins, then CUDA_VISIBLE_DEVICES, then NVML's
    device count; ([], None) when there is none of these.
    """
    if FAKE_GPUS_VARIABLE in environ:
        return device_entries(environ[FAKE_GPUS_VARIABLE]), FAKE_GPUS_SOURCE
    if "CUDA_VISIBLE_DEVICES" in environ:
        return device_entries(environ["CUDA_VISIBLE_DEVICES"]), "CUDA_VISIBLE_DEVICES"
    try:
        nvml.nvmlInit()
    except nvml.NVMLError:
        return [], None
    try:
        return [str(index) for index in range(nvml.nvmlDeviceGetCount())], "nvml"
    finally:
        nvml.nvmlShutdown()


def device_entries(value: str) -> list[str]:
    """The devices a CUDA_VISIBLE_DEVICES value lists (indices, "GPU-..." or "MIG-..." UUIDs),
    up to (like CUDA) the first entry that names none, such as "", "-1" or "NoDevFiles"."""
    entries = (entry.strip() for entry in value.split(","))
    return list(itertools.takewhile(_is_device_entry, entries))


def _is_device_entry(entry: str) -> bool:
    return entry.isdigit() or entry.startswith(("GPU-", "MIG-"))


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
    entries = device_entries(cuda_visible)
    if not entries:
        raise LookupError(f"CUDA_VISIBLE_DEVICES={cuda_visible!r} leaves the job no GPU")
    if entries[0].isdigit():
        # Caveat: CUDA numbers devices fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, while
        # NVML numbers them by PCI bus, so on a mixed machine an index can name another GPU.
        # UUIDs in CUDA_VISIBLE_DEVICES avoid this.
        return int(entries[0]), None
    # "GPU-..." or "MIG-..."; NVML needs the full UUID, not the prefix CUDA also accepts.
    return None, entries[0]


def take_gpu_slot(
    slot_dir: Path, environ: MutableMapping[str, str], count: int = 1
) -> dict[str, Any]:
    """Claim `count` free devices of this machine until this process exits, name them in
    environ's CUDA_VISIBLE_DEVICES, and return the record of the claim.

    Waits while fewer than `count` are free (holding none meanwhile, so that two jobs cannot
    each hold a part). With no device nothing is claimed, environ is left alone and device is
    None.
    """
    devices, source = machine_devices(environ)
    if devices and count > len(devices):
        raise SlotError(
            f"the job needs {count} GPUs but this machine has {len(devices)} ({source}); "
            "lower the devices its training asks for (the plan's devices key)"
        )
    slot_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    held: list[str] = []
    while devices:
        held = _lock_slots(slot_dir, devices, count)
        if held:
            break
        time.sleep(SLOT_POLL_S)
    device = ",".join(held) or None
    if device is not None:
        environ["CUDA_VISIBLE_DEVICES"] = device
    return {
        "device": device,
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


def add_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """Add --slot-dir (`required` or not) and --gpus, the arguments of take_gpu_slot."""
    parser.add_argument(
        "--slot-dir",
        type=Path,
        required=required,
        help="claim a free GPU through lock files in this folder",
    )
    parser.add_argument(
        "--gpus", type=int, default=1, help="with --slot-dir: how many GPUs the job needs"
    )


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.gpus < 1:
        parser.error("--gpus must be at least 1")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Run a command on free GPUs of this machine."
    )
    add_arguments(parser, required=True)
    supervisor.add_arguments(parser)
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    supervisor.check_arguments(parser, args)
    supervisor.die_with_parent()
    try:
        take_gpu_slot(args.slot_dir, os.environ, args.gpus)
    except SlotError as err:
        supervisor.print_error(PROG, str(err))
        return 2
    return supervisor.supervise(PROG, args)


if __name__ == "__main__":
    sys.exit(main())
