"""One writer per folder: a second process that would write the same outputs stops at once.

The lock is an exclusive `flock` on a file beside the folder, holding the writer's PID. The
kernel drops it when the writer exits, however it exits, so a killed run leaves no stale
lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from harness.errors import ProjectError


class BusyError(ProjectError, RuntimeError):
    """Another process is writing the same folder."""


@contextlib.contextmanager
def sole_writer(folder: Path, what: str) -> Iterator[None]:
    """Hold `<parent>/.<folder name>.lock` while the block runs; BusyError if taken."""
    lock_path = folder.parent / f".{folder.name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise BusyError(
                f"{folder} is in use: {what} by process {holder} is writing there; wait for "
                f"it to end or stop it (kill {holder}), then run again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
