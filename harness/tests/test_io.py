"""harness/io.py: atomic writes (file mode, a full disk, the leftovers of a killed write)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest
from harness.io import (
    DiskFullError,
    append_jsonl,
    atomic_write,
    remove_stale_temp_files,
    write_bytes,
    write_json,
)

MEGABYTE = 1 << 20


@pytest.mark.parametrize(
    ("umask", "mode"),
    [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)],
    ids=["umask-022", "umask-027", "umask-002"],
)
def test_atomic_write_respects_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    """Like open(path, "w"): 0o666 less the umask, so others on a cluster can read results."""
    previous = os.umask(umask)
    try:
        write_json(tmp_path / "metrics.json", {"loss": 1.0})
    finally:
        os.umask(previous)
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == mode


# -- a full disk ----------------------------------------------------------------------------


def assert_says_disk_full(error: DiskFullError, path: Path) -> None:
    message = str(error)
    assert str(path) in message
    assert "bytes free on that filesystem" in message
    assert "no partial file" in message
    assert error.filename == str(path)
    assert not list(path.parent.glob(".*.tmp")), "the temporary file was removed"


def test_a_full_disk_raises_disk_full_error_and_leaves_nothing(small_tmpfs: Path) -> None:
    target = small_tmpfs / "tokens.bin"
    with pytest.raises(DiskFullError) as caught:
        write_bytes(target, bytes(MEGABYTE))
    assert caught.value.errno == errno.ENOSPC
    assert_says_disk_full(caught.value, target)
    assert "no space left on the device (1,048,576 bytes to write" in str(caught.value)
    assert not target.exists()


def test_a_write_in_chunks_on_a_full_disk_keeps_the_previous_file(small_tmpfs: Path) -> None:
    """As a checkpoint is written: the earlier file stays whole when the disk fills."""
    target = small_tmpfs / "last.pt"
    target.write_bytes(b"previous")

    def chunks(handle: IO[bytes]) -> None:
        for _ in range(16):
            handle.write(bytes(MEGABYTE // 16))

    with pytest.raises(DiskFullError) as caught:
        atomic_write(target, chunks)
    assert_says_disk_full(caught.value, target)
    assert "bytes to write" not in str(caught.value), "no size given: only what is free"
    assert target.read_bytes() == b"previous"


def test_a_log_appended_on_a_full_disk_raises_disk_full_error(small_tmpfs: Path) -> None:
    """As the training log grows: a full disk is the same one-line error."""
    log = small_tmpfs / "train_log.jsonl"
    append_jsonl(log, [{"kind": "train", "step": 0}])
    with pytest.raises(DiskFullError) as caught:
        append_jsonl(log, [{"kind": "train", "step": n, "pad": "x" * 100} for n in range(1000)])
    message = str(caught.value)
    assert message.startswith(f"cannot append to {log}: no space left on the device (")
    assert "bytes free on that filesystem" in message and "Free some space" in message
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(log)


@pytest.mark.parametrize(
    ("code", "reason"),
    [(errno.ENOSPC, "no space left on the device"), (errno.EDQUOT, "disk quota exceeded")],
    ids=["ENOSPC", "EDQUOT"],
)
def test_disk_full_errors_become_disk_full_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, reason: str
) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("previous", encoding="utf-8")

    def full(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFullError) as caught:
        write_bytes(target, b"0123456789")
    assert isinstance(caught.value, OSError) and caught.value.errno == code
    assert_says_disk_full(caught.value, target)
    assert f"{reason} (10 bytes to write, " in str(caught.value)
    assert target.read_text(encoding="utf-8") == "previous"


def test_other_os_errors_pass_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError) as caught:
        write_bytes(tmp_path / "metrics.json", b"{}")
    assert type(caught.value) is OSError and caught.value.errno == errno.EIO
    assert not list(tmp_path.glob(".*.tmp"))


# -- leftovers of a killed write ------------------------------------------------------------

KILLED_WRITE = """
import os, signal, sys
from pathlib import Path
from harness.io import atomic_write

def write(handle):
    handle.write(b"half a checkpoint")
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)

atomic_write(Path(sys.argv[1]), write)
"""


def test_remove_stale_temp_files_removes_only_atomic_write_leftovers(tmp_path: Path) -> None:
    # A real leftover: a process killed in the middle of an atomic write.
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITE, str(tmp_path / "last.pt")], cwd=tmp_path, check=False
    )
    assert killed.returncode == -9
    (real,) = tmp_path.glob(".last.pt.*.tmp")
    leftovers = [real, tmp_path / ".best.pt.k3j_9x2q.tmp", tmp_path / ".log.jsonl.0a1b2c3d.tmp"]
    kept = [
        tmp_path / "best.pt",
        tmp_path / "notes.tmp",
        tmp_path / ".plot.png.tmp",  # another writer's naming (workflow/scripts)
        tmp_path / ".last.pt.toolong123.tmp",
    ]
    for path in [*leftovers[1:], *kept]:
        path.write_bytes(b"x")
    (tmp_path / ".folder.abcdefgh.tmp").mkdir()

    remove_stale_temp_files(tmp_path)

    assert not any(path.exists() for path in leftovers)
    assert all(path.is_file() for path in kept)
    assert (tmp_path / ".folder.abcdefgh.tmp").is_dir()
