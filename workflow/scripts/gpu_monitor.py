"""Run a command on a GPU slot and sample that GPU through NVML while it runs.

Command line: wrap any command, sample the GPU while it runs, write the results, and exit
with the command's exit code::

    python workflow/scripts/gpu_monitor.py --out-prefix results/run1/monitor/train \\
        [--memory-interval 0.05] [--slow-interval 0.5] [--device-uuid GPU-...] \\
        [--slot-dir .snakemake/gpu-slots] [--gpus 1] [--kill-after 10] \\
        -- python project/run.py train ...

It puts together three tools, each of which also runs alone:
    supervisor.py    --kill-after: the command dies with this wrapper, however it ends, and
                     the wrapper with its parent (a job's shell); a stop signal (SIGTERM,
                     SIGHUP, SIGINT) stops the command, and the results are still written
    gpu_slots.py     --slot-dir, --gpus: the command's GPUs, of which the first is sampled
    nvml_sampler.py  --out-prefix, the intervals, --device-uuid: the sampling and its outputs,
                     ``<prefix>.csv`` and ``<prefix>.json``

Exit codes: those of supervisor.py (the command's own, 128 + N for a signal N; 127 or 126
when it cannot run, the results then still written, with the reason); 2 when the folder of
--out-prefix cannot be written (checked before the command runs, which then does not run;
also for bad arguments, and for --gpus N above the machine's GPU count). When the results
cannot be written at the end (a full disk), the wrapper says so in one line and exits with
the command's code if that is not 0, else 1.

The summary ``<prefix>.json`` holds nvml_sampler.py's fields and these:
    command    the wrapped command (argv list)
    exit_code  the wrapper's exit code (see "Exit codes" above)
    error      null, or one line: why the command could not run ("cannot run 'x': command
               not found"), which signal killed it (SIGKILL: likely the OOM killer) and its
               peak memory, or what stopped the wrapper (a signal, the end of the job's
               Snakemake) and the exit code the command then had

When the command fails, the summary is also written to ``<prefix>.failed.json``, which
Snakemake does not delete with the failed job's outputs (the wrapper's one line on stderr
names it); a later success removes it.
    gpu_slot   null without --slot-dir, else the record of the claim (see gpu_slots.py)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from harness.io import write_text

import gpu_slots
import nvml_sampler
import supervisor

PROG = Path(__file__).name
# The summary of a job that failed, beside <prefix>.json (which Snakemake deletes with the
# failed job's outputs), until the job succeeds.
FAILED = ".failed.json"
GIB = 1024**3


def _check_folder(folder: Path) -> None:
    """Create `folder` if needed and write a file in it; raise OSError if that fails."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Run a command and sample the GPU meanwhile."
    )
    nvml_sampler.add_arguments(parser)
    gpu_slots.add_arguments(parser, required=False)
    supervisor.add_arguments(parser)
    args = parser.parse_args(argv)
    for module in (nvml_sampler, gpu_slots, supervisor):
        module.check_arguments(parser, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    supervisor.die_with_parent()
    folder = args.out_prefix.parent
    try:
        # Before the command runs: once it has, its exit code must not be lost to a bad path.
        _check_folder(folder)
    except OSError as err:
        supervisor.print_error(PROG, f"cannot write the results in {str(folder)!r}: {err.strerror}")
        return 2
    gpu_slot = None
    if args.slot_dir is not None:
        # Before the monitor starts, so that the wait is not sampled and the baseline is
        # taken once the device is ours. The child inherits the CUDA_VISIBLE_DEVICES it sets,
        # and the monitor's choose_device reads it.
        try:
            gpu_slot = gpu_slots.take_gpu_slot(args.slot_dir, os.environ, args.gpus)
        except gpu_slots.SlotError as err:
            supervisor.print_error(PROG, str(err))
            return 2
    monitor = nvml_sampler.GpuMonitor(
        memory_interval=args.memory_interval,
        slow_interval=args.slow_interval,
        device_uuid=args.device_uuid,
    )
    # Started before the child, so the baseline is the device without the job; the child is
    # a descendant of this process, so the default pid covers it.
    monitor.start()
    try:
        exit_code, error = supervisor.run_child(
            args.command, args.kill_after, supervisor.job_snakemake()
        )
    finally:
        summary = monitor.stop()
    failed = Path(f"{args.out_prefix}{FAILED}")
    if error is not None:
        peak = summary.get("peak_job_memory_bytes")
        seen = f"; the GPU memory it held peaked at {peak / GIB:.2f} GiB" if peak else ""
        supervisor.print_error(PROG, f"{error}{seen}; this record is kept in {failed}")
    extra = {"command": args.command, "exit_code": exit_code, "error": error, "gpu_slot": gpu_slot}
    try:
        monitor.write(args.out_prefix, extra)
        if exit_code == 0:
            failed.unlink(missing_ok=True)
        else:  # a failed job's outputs are deleted by Snakemake: this copy is not one
            write_text(failed, json.dumps({**monitor.summary, **extra}, indent=2) + "\n")
    except OSError as err:
        # Say so, but fail with the command's own code when it failed (e.g. a disk full of
        # checkpoints): that is the failure to report.
        supervisor.print_error(PROG, f"cannot write the results {args.out_prefix}.csv/.json: {err}")
        return exit_code or 1
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
