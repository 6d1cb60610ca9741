"""What a stage reads must be there, and be what its producer wrote.

Each stage records the size and SHA-256 of the files it writes (prepare in manifest.json,
train in train_summary.json); a stage that reads them checks them first, so an edited,
truncated or swapped file stops the run with its name and the way to rebuild it, instead of
giving a wrong result.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from harness.errors import ProjectError

CHUNK = 1 << 20


class MissingInputError(ProjectError, FileNotFoundError):
    """A file a stage reads does not exist (its producer has not run)."""


class StaleInputError(ProjectError, ValueError):
    """A file a stage reads differs from what its producer recorded."""


def sha256_of(path: Path) -> str:
    """Hex SHA-256 digest of a file, read in chunks so large files need little memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    """Size and SHA-256 of a file, as the producer records it."""
    return {"bytes": path.stat().st_size, "sha256": sha256_of(path)}


def require(paths: list[Path], producer: str) -> None:
    """Every file is there, or a MissingInputError that says which stage makes them."""
    wrong = [path for path in paths if path.exists() and not path.is_file()]
    if wrong:
        raise MissingInputError(
            f"{', '.join(map(str, wrong))}: not a file (a folder in its place?); remove it and "
            f"rebuild it with the `{producer}` stage (snakemake --forcerun {producer}, or "
            f"python run.py {producer})"
        )
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise MissingInputError(
            f"missing: {', '.join(missing)}; run the `{producer}` stage first "
            f"(snakemake --until {producer}, or python run.py {producer})"
        )


def verify(path: Path, record: dict[str, Any], producer: str, recorded_in: Path) -> None:
    """`path` matches `record` (from `recorded_in`), or a StaleInputError saying how to
    rebuild it.
    """
    require([path], producer)
    actual = file_record(path)
    if actual != record:
        raise StaleInputError(
            f"{path} is not the file the `{producer}` stage wrote: {actual['bytes']:,} bytes, "
            f"SHA-256 {actual['sha256'][:12]}…, but {recorded_in} records "
            f"{record['bytes']:,} bytes, SHA-256 {record['sha256'][:12]}… (edited, truncated "
            f"or copied from another run?). Rebuild it: snakemake --forcerun {producer}, "
            f"or python run.py {producer}"
        )
