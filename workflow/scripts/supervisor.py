"""Run a command that dies with this process, however this process ends.

Command line::

    python workflow/scripts/supervisor.py [--kill-after 10] -- python project/run.py train ...

The command runs in a process group of its own, whose leader, a small guard process, SIGKILLs
the whole group (the command's children too, unless they leave it) once the supervisor has
ended, however it ended; on Linux the kernel also SIGKILLs the command itself the moment the
supervisor dies (PR_SET_PDEATHSIG), and the supervisor the moment its own parent (a job's
shell) dies, so that no part of a job outlives that shell. Being in its own group, the command
gets no signal meant for a terminal's foreground group (Ctrl-C), and must not read from a
terminal. SIGTERM, SIGHUP or SIGINT to the supervisor sends SIGTERM to the group, then SIGKILL
if the command still runs --kill-after seconds later; so does the end of the Snakemake that
started the job (job_snakemake), however it ends (`kill -9` included): a job never runs on
and publishes after its Snakemake, and a training stopped so resumes from its checkpoint at
the next `snakemake`. A command killed by a signal (the kernel's OOM killer sends SIGKILL)
is reported in one line with the signal, the likely cause and the command's peak memory.

Exit codes: the command's own (128 + N for signal N); 128 + N when the supervisor was stopped
by signal N; 127 when the command was not found, 126 when it could not be executed (with one
line on stderr saying why); 2 for bad arguments.

gpu_slots.py and gpu_monitor.py run their command through run_child here, and die with their
parent through die_with_parent.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

PROG = Path(__file__).name
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
KILL_AFTER_S = 10.0
WATCH_INTERVAL_S = 1.0  # how often the job's Snakemake is looked for
GIB = 1024**3
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


def run_child(
    command: list[str], kill_after: float = KILL_AFTER_S, watch: psutil.Process | None = None
) -> tuple[int, str | None]:
    """Run `command` in a process group of its own; return (exit code, error).

    The exit code is the command's own, 128 + N if signal N ended it, 127 if it was not found,
    126 if it could not be executed, or 128 + N if this process was sent the stop signal N
    (SIGTERM, SIGHUP, SIGINT), or 128 + SIGTERM if the process `watch` ended first. Then the
    whole group gets SIGTERM, and SIGKILL if the command still runs `kill_after` seconds
    later. error: None, else one line saying why the command did not run, was stopped, or
    which signal killed it. Whatever the outcome, the group is SIGKILLed on return, so
    nothing the command left running outlives it (see _process_group).
    """
    stop_signals: list[int] = []
    stop_reason: list[str] = []
    with _process_group() as group:
        timer = threading.Timer(kill_after, os.killpg, (group, signal.SIGKILL))

        def stop(signum: int, _frame: object) -> None:
            # A scheduler or a terminal signals only this process (the command's group is not
            # the terminal's foreground group): pass it on, then wait for the command as usual,
            # so that the caller still gets to write its results. Only the first stop acts.
            if not stop_signals:
                os.killpg(group, signal.SIGTERM)
                timer.start()
            stop_signals.append(signum)

        previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
        ended = threading.Event()
        if watch is not None:
            threading.Thread(
                target=_stop_when_gone, args=(watch, ended, stop, stop_reason), daemon=True
            ).start()
        try:
            if os.sep not in command[0] and shutil.which(command[0]) is None:
                # Searched as a shell does: exec would report a PATH folder that it may not
                # search (EACCES) rather than the missing command.
                raise FileNotFoundError(errno.ENOENT, "command not found")
            child = subprocess.Popen(
                command, process_group=group, preexec_fn=_die_with_parent_hook(os.getpid())
            )
            returncode = child.wait()
        except OSError as err:
            exit_code = 127 if isinstance(err, FileNotFoundError) else 126
            return exit_code, f"cannot run {command[0]!r}: {err.strerror}"
        finally:
            ended.set()
            for number, handler in previous.items():
                signal.signal(number, handler)
            timer.cancel()
    exit_code = 128 - returncode if returncode < 0 else returncode
    if not stop_signals:
        return exit_code, killed_by(-returncode) if returncode < 0 else None
    why = stop_reason[0] if stop_reason else f"{signal.Signals(stop_signals[0]).name} received"
    error = f"{why}: sent SIGTERM to the command, which ended with exit code {exit_code}"
    return 128 + stop_signals[0], error


def _stop_when_gone(
    watched: psutil.Process,
    ended: threading.Event,
    stop: Callable[[int, object], None],
    reason: list[str],
) -> None:
    """Call stop(SIGTERM) once `watched` no longer runs, unless `ended` is set first."""
    while not ended.wait(WATCH_INTERVAL_S):
        if not watched.is_running() or watched.status() == psutil.STATUS_ZOMBIE:
            reason.append(f"the Snakemake that started this job (pid {watched.pid}) has ended")
            stop(signal.SIGTERM, None)
            return


def killed_by(number: int) -> str:
    """One line on the signal that killed the command: the likely cause, and its peak
    resident memory (the largest of this process's children that have ended).
    """
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / GIB  # KiB on Linux
    try:
        name = signal.Signals(number).name
    except ValueError:  # a real-time signal has no name
        name = "a signal"
    cause = (
        "likely the kernel's out-of-memory killer (`dmesg` or `journalctl -k` says so), "
        "else a `kill -9` or a scheduler's memory or time limit"
        if number == signal.SIGKILL
        else "it crashed or was signalled"
    )
    return (
        f"the command was killed by {name} (signal {number}): {cause}; its peak resident "
        f"memory was {peak:.2f} GiB"
    )


def job_snakemake() -> psutil.Process | None:
    """The Snakemake that started the job this process belongs to: its outermost ancestor
    that runs Snakemake (a job run through a Snakemake of its own, as on a cluster node,
    belongs to that one); None outside a workflow.
    """
    found = None
    with contextlib.suppress(psutil.Error):
        for process in psutil.Process().parents():
            with contextlib.suppress(psutil.Error):
                if is_snakemake(process.cmdline()):
                    found = process
    return found


def is_snakemake(command: list[str]) -> bool:
    """Whether `command` runs Snakemake (`snakemake ...`, `python -m snakemake ...`)."""
    return command[1:3] == ["-m", "snakemake"] or any(
        Path(part).name == "snakemake" for part in command[:2]
    )


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


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent (a job's shell) dies, so that its
    command dies too (see run_child) rather than go on without the job. Linux only."""
    hook = _die_with_parent_hook(os.getppid())
    if hook is not None:
        hook()


def _die_with_parent_hook(parent: int) -> Callable[[], None] | None:
    """A function after which the kernel SIGKILLs the process that calls it, a child of
    `parent`, when `parent` dies: run_child's preexec_fn with this process as `parent`.

    Linux only (prctl PR_SET_PDEATHSIG); None elsewhere. As a preexec_fn it runs in the forked
    child before exec while other threads (a GPU sampler's) may run, so it calls only a libc
    function found here, before the fork: nothing that takes a lock another thread could have
    held at the fork.
    """
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def die() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl: the kernel will not tell
            os.kill(os.getpid(), signal.SIGKILL)

    return die


def print_error(prog: str, message: str) -> None:
    """Print one line on stderr; a stderr that is gone (a hung-up terminal) changes nothing."""
    with contextlib.suppress(OSError):
        print(f"{prog}: error: {message}", file=sys.stderr, flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --kill-after and the command (after --), the arguments of run_child."""
    parser.add_argument(
        "--kill-after",
        type=float,
        default=KILL_AFTER_S,
        help="seconds a stopped command gets between SIGTERM and SIGKILL (default %(default)s)",
    )
    parser.add_argument("command", nargs="+", help="the command to run, after --")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.kill_after < 0:
        parser.error("--kill-after must not be negative")


def supervise(prog: str, args: argparse.Namespace) -> int:
    """Run the command of `args` (see add_arguments) through run_child; return the exit code.

    Why the command did not run, or was stopped, goes to stderr in one line."""
    exit_code, error = run_child(args.command, args.kill_after, job_snakemake())
    if error is not None:
        print_error(prog, error)
    return exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Run a command that dies with this process."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    die_with_parent()
    return supervise(PROG, args)


if __name__ == "__main__":
    sys.exit(main())
