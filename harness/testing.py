"""What the tests of the harness, of each plan and of the workflow share: `small_tmpfs`,
a real, tiny filesystem that fills up (mounting needs root; a test that asks for one
elsewhere is skipped, saying why). A conftest imports the fixture to offer it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest  # test helpers: pytest is the caller's, not a dependency of the harness


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB filesystem (mounting needs root; skipped otherwise)."""
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)]
    try:
        mount = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as error:
        pytest.skip(f"cannot run mount: {error}")
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a 64 KiB tmpfs (needs root): {mount.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
