"""Atomic file output: write to a temporary file beside the target, then rename.

A run killed half-way never leaves a truncated JSON or checkpoint that a rerun (or
Snakemake) would take as finished; `remove_stale_temp_files` clears the temporary files
that such a kill leaves behind. A full disk raises `DiskFullError`, which says so.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from harness.errors import ProjectError

# atomic_write's temporary files, `.<target name>.<8 characters>.tmp` (tempfile.mkstemp's
# names, which earlier versions used, also match).
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
_DISK_FULL = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded"}


class DamagedFileError(ProjectError, ValueError):
    """A file that should hold JSON does not (edited, truncated, or a folder in its place)."""


class DiskFullError(ProjectError, OSError):
    """The filesystem ran out of space (ENOSPC) or quota (EDQUOT) while a file was written;
    `errno` and `filename` are the original error's and the target's."""

    def __str__(self) -> str:
        return str(self.strerror)


def atomic_write(
    path: Path,
    write: Callable[[IO[bytes]], None],
    size: int | None = None,
    durable: bool = True,
) -> None:
    """Call `write(handle)` on a temporary file, fsync it, then rename it onto `path`.

    `size`, the number of bytes to be written when the caller knows it, goes into the
    message of the DiskFullError raised when the disk (or quota) is full. `durable` False
    leaves the fsync out (for a file that is derived again at every start).
    """
    try:
        _write_and_rename(path, write, durable)
    except OSError as error:
        kept = f"no partial file, and any earlier {path.name} is unchanged"
        raise _disk_full(error, path, size, "write", kept) from error


def _disk_full(error: OSError, path: Path, size: int | None, verb: str, kept: str) -> OSError:
    """A DiskFullError for `error` if the disk or quota is full, else `error` itself."""
    if error.errno not in _DISK_FULL:
        return error
    folder = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    to_write = "" if size is None else f"{size:,} bytes to write, "
    message = (
        f"cannot {verb} {path}: {_DISK_FULL[error.errno]} ({to_write}"
        f"{shutil.disk_usage(folder).free:,} bytes free on that filesystem). Nothing was "
        f"left behind: {kept}. Free some space and run again"
    )
    return DiskFullError(error.errno, message, str(path))


def _write_and_rename(path: Path, write: Callable[[IO[bytes]], None], durable: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_temp_file(path: Path) -> tuple[int, Path]:
    """A new empty file beside `path`, with the mode `open(path, "w")` would give it: 0o666
    less the umask (tempfile.mkstemp makes 0o600, which no one else on a cluster can read).
    """
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def remove_stale_temp_files(folder: Path) -> None:
    """Remove the temporary files that atomic_write left in `folder` when a process was
    killed mid-write; no other file is touched. Only for a folder that no other process
    writes at the same time: its temporary file in progress would go too.
    """
    for path in folder.glob(".*.tmp"):
        if _TEMP_NAME.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data), size=len(data))


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_text_if_changed(path: Path, text: str) -> None:
    """Write `text` unless the file already holds it, so that its mtime marks real changes.

    For records that reads.py derives again before every workflow run (thousands for a
    sweep): renamed into place whole, but not fsynced; one that a crash left empty differs
    from its text at the next start, and is written again.
    """
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        data = text.encode("utf-8")
        atomic_write(path, lambda handle: handle.write(data), size=len(data), durable=False)


def write_json(path: Path, payload: Any) -> None:
    write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    write_text(path, "".join(json.dumps(record) + "\n" for record in records))


def append_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append records as JSON lines (the training log grows while training runs); a full
    disk is a DiskFullError (a torn last line is skipped by the log's readers).
    """
    text = "".join(json.dumps(record) + "\n" for record in records)
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as error:
        kept = "the lines already there are unchanged (a torn last one is skipped)"
        raise _disk_full(error, path, len(text.encode()), "append to", kept) from error


def read_json(path: Path) -> Any:
    """A JSON file; a damaged one (not JSON, not UTF-8, a folder) is a DamagedFileError."""
    return _readable(path, json.load)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return _readable(path, lambda handle: [json.loads(line) for line in handle if line.strip()])


def _readable(path: Path, read: Callable[[IO[str]], Any]) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return read(handle)
    except (IsADirectoryError, ValueError) as error:
        raise DamagedFileError(
            f"{path} cannot be read ({error}): it is not a file this project wrote, or it is "
            "damaged; delete it and rebuild it (snakemake, or the run.py stage that writes it)"
        ) from None
