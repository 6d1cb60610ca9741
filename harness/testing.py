"""A pytest plugin for the tests of the harness, of each plan and of the workflow (loaded
by `-p harness.testing`, pyproject.toml's addopts):

- OpenMP threads that wait passively: PyTorch's CPU threads otherwise spin while they
  wait, and a training beside any other busy process (another test's training, a
  Snakemake planning, a second job) then runs several times slower: measured on the
  2-core machine, a tiny model's 1,500 steps took 6.6-10.4 s passive and 64-85 s spinning
  beside a busy neighbour. Set before any test imports torch, for every process it starts.
- `small_tmpfs`, a real, tiny filesystem that fills up (mounting needs root; a test that
  asks for one elsewhere is skipped, saying why).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest  # test helpers: pytest is the caller's, not a dependency of the harness

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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
