"""What a stage reads must be what its producer wrote, and what it reports must be what it
measured: an edited or damaged manifest, a damaged JSON record, a folder in place of a file,
and a validation split too short to score are one-line refusals, never a wrong result.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from project.data.dataset import manifest_digest
from project.tests import dispatch as run
from project.tests.run_files import output

Argv = Callable[..., list[str]]


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], code: int = 1) -> str:
    """run.main's one-line error for `argv` (no traceback), after checking its exit code."""
    assert run.main(argv) == code
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "Traceback" not in error
    return error


def edit_manifest(out: Path, redigest: bool, **changes: object) -> None:
    path = output(out, "manifest")
    manifest = {**json.loads(path.read_text()), **changes}
    if redigest:
        manifest["digest"] = manifest_digest(manifest)
    path.write_text(json.dumps(manifest))


@pytest.fixture
def out(with_prepared_data: Callable[[Path], Path], tmp_path: Path) -> Path:
    """A fresh --out-dir holding the prepared real text."""
    return with_prepared_data(tmp_path / "out")


def test_an_edited_manifest_is_refused(
    out: Path, tiny_cli: Argv, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_manifest(out, redigest=False, vocab_size=99)
    error = refused(tiny_cli("train", out), capsys)
    assert str(output(out, "manifest")) in error and "does not match its digest" in error
    assert "snakemake --forcerun prepare" in error


def test_a_manifest_that_contradicts_its_files_is_refused(
    out: Path, tiny_cli: Argv, capsys: pytest.CaptureFixture[str]
) -> None:
    """Even with a digest that fits the edit, the stated sizes must be the files' sizes."""
    vocab_size = json.loads(output(out, "manifest").read_text())["vocab_size"]
    edit_manifest(out, redigest=True, vocab_size=vocab_size + 40)
    error = refused(tiny_cli("train", out), capsys)
    assert f"vocab_size {vocab_size + 40} (the files: {vocab_size})" in error


@pytest.mark.parametrize("damage", ["not json", "folder"])
def test_a_damaged_json_record_is_one_line(
    out: Path, tiny_cli: Argv, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    manifest = output(out, "manifest")
    manifest.unlink()
    if damage == "folder":
        manifest.mkdir()
    else:
        manifest.write_text("{ not json")
    error = refused(tiny_cli("train", out), capsys)
    assert str(manifest) in error
    assert ("not a file" if damage == "folder" else "cannot be read") in error


def test_a_validation_split_shorter_than_a_window_is_a_config_error(
    shakespeare_file: Path, tiny_cli: Argv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """700 characters of the real text, 5 % of them for validation: 35 characters, fewer
    than one window of the tiny model's context (64) + 1.
    """
    text = tmp_path / "short.txt"
    text.write_text(shakespeare_file.read_text(encoding="utf-8")[:700], encoding="utf-8")
    out = tmp_path / "short"
    own_text = ["--data-source", str(text), "--set", "data.sha256=null"]
    split = ["--set", "data.train_fraction=0.95"]
    assert run.main([*tiny_cli("prepare", out), *own_text, *split]) == 0
    error = refused(tiny_cli("train", out), capsys, code=2)
    assert "the validation split has 35 characters" in error and "block_size + 1 = 65" in error
    assert not output(out, "summary").exists()
