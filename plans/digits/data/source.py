"""D1 Source: a verified copy of the digits file from a local file, a mirror folder or the
copy that an installed scikit-learn bundles.

Every copy is checked against the plan's SHA-256 before it is used. scikit-learn is never
required, nor imported: only its bundled file is read, when the package is installed.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ProjectError
from harness.sections import ConfigError

from ..utils.config import Config, DataConfig

logger = logging.getLogger(__name__)

# D1: the decompressed file, 1,797 rows, 264,712 bytes.
SHA256 = "6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8"
MIRROR_ENV = "DIGITS_DATA_MIRROR"
MIRROR_FILE = Path("digits") / "digits.csv"  # under a mirror folder
BUNDLED_FILE = Path("datasets") / "data" / "digits.csv.gz"  # inside the sklearn package
REPO_DIR = Path(__file__).resolve().parents[3]  # plans/digits/data/source.py → the repo


class DataSourceError(ProjectError, RuntimeError):
    """No verified copy of the digits file can be had; the message says how to fix it."""


@dataclass(frozen=True)
class Source:
    """D1: the verified bytes of the digits file and where they came from."""

    content: bytes
    origin: str  # "local_file", "mirror" or "scikit-learn"
    location: str  # the file it was read from
    sha256: str = SHA256


def resolve_path(value: str) -> Path:
    """A config path, relative to the repository root wherever run.py is started."""
    path = Path(value).expanduser()
    return (path if path.is_absolute() else REPO_DIR / path).resolve()


def locate_source(config: DataConfig) -> Source:
    """D1: the first of these that exists, verified against SHA256.

    1. data.local_file, when set: an explicit choice, so a missing file is an error.
    2. <mirror>/digits/digits.csv, the mirror being DIGITS_DATA_MIRROR (set and not empty)
       or data.mirror_dir; one the user chose must hold the file, while the plan's
       default mirror may be absent.
    3. scikit-learn's bundled sklearn/datasets/data/digits.csv.gz, decompressed, when
       scikit-learn is installed.
    """
    if config.local_file is not None:
        path = resolve_path(config.local_file)
        if not path.is_file():
            raise DataSourceError(
                f"data.local_file is {path}, which is not a file; fix the path, or unset "
                "data.local_file to use the mirror or scikit-learn's copy"
            )
        return verified(read_copy(path, "local_file"), "local_file", path)
    looked: list[str] = []
    env_mirror = os.environ.get(MIRROR_ENV)
    mirror_dir = env_mirror or config.mirror_dir
    if mirror_dir is not None:
        path = resolve_path(mirror_dir) / MIRROR_FILE
        if path.is_file():
            return verified(read_copy(path, "mirror"), "mirror", path)
        if env_mirror or config.mirror_dir != DataConfig().mirror_dir:
            raise DataSourceError(
                f"the mirror {path.parent.parent} ({MIRROR_ENV} or data.mirror_dir) does not "
                f"hold the digits: expected the file {path}"
            )
        looked.append(str(path))
    bundled = bundled_file()
    if bundled is not None:
        return verified(read_copy(bundled, "scikit-learn"), "scikit-learn", bundled)
    looked.append(f"<scikit-learn>/{BUNDLED_FILE} (scikit-learn is not installed)")
    raise DataSourceError(
        "no copy of the digits file (optdigits, 1,797 rows) was found; looked in: "
        f"{'; '.join(looked)}. Set data.local_file=/path/to/digits.csv, or "
        f"{MIRROR_ENV}=/path/to/mirror (holding digits/digits.csv), or install scikit-learn"
    )


def bundled_file() -> Path | None:
    """scikit-learn's copy of the file, found without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / BUNDLED_FILE
    return path if path.is_file() else None


def read_copy(path: Path, origin: str) -> bytes:
    """A copy's bytes: scikit-learn's is gzip-compressed, the others are the file itself."""
    content = path.read_bytes()
    return gzip.decompress(content) if origin == "scikit-learn" else content


def verified(content: bytes, origin: str, path: Path) -> Source:
    """D1: `content` as the Source it is, if its SHA-256 is the plan's; else an error."""
    actual = hashlib.sha256(content).hexdigest()
    if actual != SHA256:
        raise DataSourceError(
            f"{path} ({origin}) holds {len(content):,} bytes with SHA-256 {actual}, not the "
            f"plan's digits file ({SHA256}); replace it with a verified copy"
        )
    logger.info("using the digits from %s (%s, SHA-256 verified)", path, origin)
    return Source(content, origin, str(path))


def source_record(config: Config) -> dict[str, str]:
    """Where the prepare stage (its `config`) will read the digits, as the workflow records
    it before any job (source.json, whose digest decides when prepare reruns): the verified
    file's origin, location and SHA-256.
    """
    source = locate_source(config.data)
    return {"origin": source.origin, "location": source.location, "sha256": source.sha256}


def recorded_source(record: dict[str, str]) -> Source:
    """D1: the copy that the workflow located when it planned the run (`source_record`'s
    record), verified again.
    """
    path = Path(record["location"])
    if not path.is_file():
        raise DataSourceError(
            f"{path}, the digits this run was planned with, is gone; plan the run again"
        )
    return verified(read_copy(path, record["origin"]), record["origin"], path)


def data_source_overrides(source: str) -> dict[str, Any]:
    """`--data-source PATH`: a file (data.local_file) or a mirror folder (data.mirror_dir)."""
    path = Path(source).expanduser().resolve()
    if path.is_dir():
        return {"data": {"mirror_dir": str(path)}}
    if path.is_file():
        return {"data": {"local_file": str(path)}}
    raise ConfigError(f"--data-source {source}: no such file or folder")
