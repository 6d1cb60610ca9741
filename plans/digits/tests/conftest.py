"""Shared fixtures: the real digits file, its prepared splits, one PyTorch thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from digits.data.dataset import PreparedDigits
from digits.data.prepare import prepare
from digits.data.source import MIRROR_ENV, verified

# The offline copy beside the checkout: <repo>/../shared/data/digits/digits.csv
DIGITS_FILE = Path(__file__).resolve().parents[3].parent / "shared/data/digits/digits.csv"


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One PyTorch thread: the test machine's 2 cores are shared with other work."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def no_mirror_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan's own rules for finding its data, whatever the shell exports (CI exports
    DIGITS_DATA_MIRROR for the workflow's runs); a test that wants it sets it.
    """
    monkeypatch.delenv(MIRROR_ENV, raising=False)


@pytest.fixture(scope="session")
def digits_file() -> Path:
    """The real file (D1); tests that claim a result on it skip when it is absent."""
    if not DIGITS_FILE.is_file():
        pytest.skip(f"the offline copy of the digits is absent: {DIGITS_FILE}")
    return DIGITS_FILE


@pytest.fixture(scope="session")
def prepared_files(digits_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The `prepare` stage's files of the real data: {"rows": PATH, "manifest": PATH}."""
    folder = tmp_path_factory.mktemp("prepared")
    files = {"rows": folder / "digits.npy", "manifest": folder / "manifest.json"}
    source = verified(digits_file.read_bytes(), "local_file", digits_file)
    prepare(source, files["rows"], files["manifest"])
    return files


@pytest.fixture(scope="session")
def prepared(prepared_files: dict) -> PreparedDigits:
    return PreparedDigits.load(prepared_files["rows"], prepared_files["manifest"])
