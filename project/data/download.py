"""D1 Source: a verified copy of the text from a local file, a mirror folder, the cache or the web.

Every copy, wherever it comes from, is checked against the expected SHA-256 digest before it
is used. With no expected digest (`data.sha256: null`, for a user's own text) the first copy
found is accepted as it is; its actual digest is still computed and reported. The cache is
re-checked on every read, so a copy downloaded without a digest is never trusted by a later
run that expects one. Downloads go to a temporary file next to the final path and are renamed
into place only once complete (and verified, when a digest is given), so a crash or a bad
transfer never leaves a partial file where the pipeline would pick it up.
"""

import hashlib
import http.client
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from harness.errors import ProjectError
from harness.inputs import StaleInputError, sha256_of
from harness.sections import ConfigError

from ..utils.config import DataConfig

logger = logging.getLogger(__name__)

REPO_DIR = Path(__file__).resolve().parents[2]  # config paths are relative to it
CHUNK_BYTES = 1 << 20  # stream downloads 1 MiB at a time
MIRROR_ENV = "CHARGPT_DATA_MIRROR"
CACHE_ENV = "CHARGPT_DATA_CACHE"


class DataSourceError(ProjectError, RuntimeError):
    """No verified copy of the source text can be had; the message says how to fix it."""


@dataclass(frozen=True)
class SourceFile:
    """A copy of the source text (verified, when a digest was given) and where it came from."""

    path: Path
    sha256: str  # the copy's actual digest
    origin: str  # "local_file", "mirror", "cache" or "download"
    location: str  # the file path or URL it came from


def resolve_path(value: str | None) -> Path | None:
    """Config paths are relative to the repository root, wherever run.py is started."""
    if value is None:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else REPO_DIR / path


def locate_source(config: DataConfig, download: bool = True) -> SourceFile:
    """D1: a verified copy of the text; env variables override the mirror and cache keys.

    A source the user chose must hold the text, or the stage stops at once naming the path:
    data.local_file, a mirror given by CHARGPT_DATA_MIRROR (set and not empty), or
    data.mirror_dir when it differs from its default, the plan's (as with
    --data-source DIR). The plan's own mirror (../shared/data) is only a default: without the
    text there, the cache and the download are tried (`download=False`: only planned).
    """
    env_mirror = os.environ.get(MIRROR_ENV)
    plan_mirror = DataConfig().mirror_dir
    return fetch_source(
        url=config.url,
        sha256=config.sha256,
        filename=config.filename,
        dataset=config.dataset,
        local_file=resolve_path(config.local_file),
        mirror_dir=resolve_path(env_mirror or config.mirror_dir),
        mirror_optional=not env_mirror and config.mirror_dir == plan_mirror,
        cache_dir=resolve_path(os.environ.get(CACHE_ENV) or config.cache_dir),
        retries=config.download_retries,
        timeout_s=config.download_timeout_s,
        download=download,
    )


def recorded_source(record: dict[str, str], config: DataConfig) -> SourceFile:
    """The copy of the text that the workflow located when it planned the run (reads.py's
    `source.json`: a SourceFile as JSON), checked to be unchanged since; a planned download
    is made now.
    """
    if record["origin"] == "download":
        return locate_source(config)
    path = Path(record["path"])
    if not path.is_file():
        raise DataSourceError(f"{path}, the text this run was planned with, is gone")
    actual = sha256_of(path)
    if actual != record["sha256"]:
        raise StaleInputError(
            f"{path} changed after the workflow planned this run (SHA-256 {actual[:12]}…, "
            f"planned {record['sha256'][:12]}…): run snakemake again"
        )
    return SourceFile(path, actual, record["origin"], record["location"])


def source_record(source: SourceFile) -> dict[str, str]:
    """A SourceFile as JSON (what `recorded_source` reads back)."""
    return {**asdict(source), "path": str(source.path)}


def planned_source(data: DataConfig) -> dict[str, str]:
    """Where the prepare stage will find the text (a planned download where it must fetch
    it), as the workflow records it before any job (source.json).
    """
    return source_record(locate_source(data, download=False))


def source_override(source: str) -> dict[str, Any]:
    """`--data-source`: a file (data.local_file), a mirror folder (data.mirror_dir) or a URL."""
    if source.startswith(("http://", "https://")):
        return {"data": {"url": source}}
    path = Path(source).expanduser().resolve()
    if path.is_dir():
        return {"data": {"mirror_dir": str(path)}}
    if path.is_file():
        return {"data": {"local_file": str(path)}}
    raise ConfigError(f"--data-source {source}: no such file or folder (nor an http(s) URL)")


class _TruncatedBody(OSError):
    """The server closed the connection before sending all the bytes it announced."""


class _DownloadFailed(Exception):
    """Every download attempt failed, or one failed in a way that retrying cannot fix."""


def fetch_source(
    *,
    url: str | None,
    sha256: str | None,
    filename: str,
    dataset: str,
    local_file: Path | None,
    mirror_dir: Path | None,
    cache_dir: Path,
    mirror_optional: bool = False,
    retries: int = 4,
    timeout_s: float = 30.0,
    backoff_s: float = 1.0,
    download: bool = True,
) -> SourceFile:
    """Return a verified copy of `<dataset>/<filename>`, trying sources in order of preference.

    1. `local_file`, if given (an explicit choice: a missing or wrong file is an error).
    2. `<mirror_dir>/<dataset>/<filename>`, if given (a wrong file is an error, and so is a
       missing one, unless `mirror_optional`: a default mirror that may be absent).
    3. `<cache_dir>/<dataset>/<filename>`, if it verifies (a stale copy is deleted).
    4. A download from `url` into the cache, retried on transient errors; an error at once
       if the cache folder cannot be created or written.

    `sha256=None` means no expected digest: the first copy found is used as it is.
    `download=False` only plans step 4: the copy it would download to, with the expected
    digest ("" for none) and origin "download".
    """
    expected = None if sha256 is None else sha256.lower()
    if local_file is not None:
        return _use_local_file(local_file, expected)

    looked: list[Path] = []
    if mirror_dir is not None:
        mirrored = mirror_dir / dataset / filename
        looked.append(mirrored)
        if mirrored.is_file():
            return _use_mirror(mirrored, expected)
        if not mirror_optional:
            raise DataSourceError(
                f"the mirror folder {mirror_dir} (data.mirror_dir or CHARGPT_DATA_MIRROR) does "
                f"not hold the text: expected the file {mirrored} (a mirror is laid out "
                "<mirror>/<dataset>/<filename>). Put a copy there, or point data.mirror_dir or "
                "CHARGPT_DATA_MIRROR at a mirror that holds it, or drop that setting to fall back "
                "to the download cache and the download."
            )
        logger.info("mirror has no %s/%s (looked for %s)", dataset, filename, mirrored)

    cached = cache_dir / dataset / filename
    looked.append(cached)
    if cached.is_file():
        actual = sha256_of(cached)
        if expected is None or actual == expected:
            logger.info("using cached copy %s (SHA-256 %s)", cached, actual)
            return SourceFile(cached, actual, "cache", str(cached))
        # A stale or corrupt cache must never be trusted; fetch a fresh copy instead.
        logger.warning(
            "cached %s has SHA-256 %s, expected %s; deleting it", cached, actual, expected
        )
        cached.unlink()

    if url is None:
        raise DataSourceError(_no_source_message(looked, "no download address was given", expected))
    if not download:
        return SourceFile(cached, expected or "", "download", url)
    _check_cache_folder(cached.parent)
    try:
        actual = _download(
            url, cached, expected, retries=retries, timeout_s=timeout_s, backoff_s=backoff_s
        )
    except _DownloadFailed as err:
        raise DataSourceError(_no_source_message(looked, str(err), expected)) from err
    logger.info("downloaded %s to %s (SHA-256 %s)", url, cached, actual)
    return SourceFile(cached, actual, "download", url)


def _trust_hint(actual: str) -> str:
    """How to accept a file whose digest differs from the expected one."""
    return (
        f"If this is the file you meant, set data.sha256={actual}, "
        "or set data.sha256: null to accept any text without a check."
    )


def _use_local_file(path: Path, expected: str | None) -> SourceFile:
    """Verify the explicitly configured local copy; never fall back to other sources."""
    if not path.is_file():
        raise DataSourceError(
            f"data.local_file points at {path}, which is not an existing file. "
            "Fix the path, or unset data.local_file to use the mirror, cache or download."
        )
    actual = sha256_of(path)
    if expected is not None and actual != expected:
        raise DataSourceError(
            f"data.local_file {path} has SHA-256 {actual}, expected {expected}. "
            + _trust_hint(actual)
        )
    logger.info("using local file %s (SHA-256 %s)", path, actual)
    return SourceFile(path, actual, "local_file", str(path))


def _use_mirror(path: Path, expected: str | None) -> SourceFile:
    """Verify the mirror's copy; a wrong file in a mirror is a setup error worth stopping for."""
    actual = sha256_of(path)
    if expected is not None and actual != expected:
        raise DataSourceError(
            f"mirror file {path} has SHA-256 {actual}, expected {expected}. "
            "Replace it with a verified copy, or point data.mirror_dir at another mirror. "
            + _trust_hint(actual)
        )
    logger.info("using mirror copy %s (SHA-256 %s)", path, actual)
    return SourceFile(path, actual, "mirror", str(path))


def _check_cache_folder(folder: Path) -> None:
    """Create the folder a download goes to and check that files can be made in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise DataSourceError(
            f"the download cache folder {folder} cannot be created or written ({err}). "
            "Point data.cache_dir or the environment variable CHARGPT_DATA_CACHE at a writable "
            "folder, or provide the text through data.local_file or data.mirror_dir."
        ) from err


def _no_source_message(looked: list[Path], why_no_download: str, expected: str | None) -> str:
    """Explain that no copy was found and no download worked, and list the ways to fix it."""
    places = "\n".join(f"  - {path}" for path in looked)
    wanted = "a copy of the text" if expected is None else f"a copy with SHA-256 {expected}"
    return (
        f"No verified copy of the source text is available.\n"
        f"No local copy was found; looked in:\n{places}\n"
        f"The download failed: {why_no_download}.\n"
        f"To fix this, provide {wanted} in one of these ways:\n"
        f"  - set the config key data.local_file=/path/to/file\n"
        f"  - set the config key data.mirror_dir=/path/to/mirror "
        f"(laid out as <mirror>/<dataset>/<filename>)\n"
        f"  - set the environment variable CHARGPT_DATA_MIRROR=/path/to/mirror (same layout)\n"
        f"  - pass --data-source PATH to project/run.py"
    )


def _download(
    url: str,
    dest: Path,
    expected: str | None,
    *,
    retries: int,
    timeout_s: float,
    backoff_s: float,
) -> str:
    """Download `url` to `dest`, retrying transient errors with exponential backoff.

    Returns the downloaded file's SHA-256 digest.
    """
    attempts = retries + 1
    for attempt in range(attempts):
        try:
            return _download_once(url, dest, expected, timeout_s)
        except (OSError, http.client.HTTPException) as err:
            if isinstance(err, urllib.error.HTTPError):
                err.close()  # an HTTPError holds the open response; release its socket now
            if not _is_transient(err):
                raise _DownloadFailed(f"{url}: {err!r} (not retried)") from err
            if attempt + 1 == attempts:
                raise _DownloadFailed(
                    f"{url}: {attempts} attempts made, last error: {err!r}"
                ) from err
            wait_s = backoff_s * 2**attempt
            logger.warning(
                "download attempt %d/%d of %s failed (%r); retrying in %.2f s",
                attempt + 1,
                attempts,
                url,
                err,
                wait_s,
            )
            time.sleep(wait_s)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _is_transient(err: BaseException) -> bool:
    """True for errors a later attempt may not hit: timeouts, dropped connections, 5xx, 429."""
    if isinstance(err, urllib.error.HTTPError):
        return err.code == 429 or err.code >= 500
    # URLError without an HTTP status means the connection itself failed (refused, DNS, ...).
    transient = (
        urllib.error.URLError,
        TimeoutError,
        ConnectionError,
        http.client.IncompleteRead,
        _TruncatedBody,
    )
    return isinstance(err, transient)


def _download_once(url: str, dest: Path, expected: str | None, timeout_s: float) -> str:
    """One attempt: stream into a temporary file beside `dest`, verify, then rename into place.

    Returns the file's SHA-256 digest.
    """
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
            actual = _stream_to(response, out)
            out.flush()
            os.fsync(out.fileno())  # the bytes must be on disk before the rename publishes them
        if expected is not None and actual != expected:
            # A complete body with the wrong digest will not get better by retrying.
            raise DataSourceError(
                f"the file downloaded from {url} has SHA-256 {actual}, expected {expected}. "
                "The address may serve a different version: provide a verified copy through "
                "data.local_file or data.mirror_dir. " + _trust_hint(actual)
            )
        os.replace(tmp, dest)
        return actual
    finally:
        tmp.unlink(missing_ok=True)  # a no-op after the rename; removes the partial file otherwise


def _stream_to(response: http.client.HTTPResponse, out: BinaryIO) -> str:
    """Copy the response body to `out` chunk by chunk; return its hex SHA-256 digest."""
    digest = hashlib.sha256()
    received = 0
    while chunk := response.read(CHUNK_BYTES):
        digest.update(chunk)
        out.write(chunk)
        received += len(chunk)
    # http.client returns a short body without complaint when the server hangs up early.
    announced = _content_length(response)
    if announced is not None and received < announced:
        raise _TruncatedBody(f"connection closed after {received} of {announced} bytes")
    return digest.hexdigest()


def _content_length(response: http.client.HTTPResponse) -> int | None:
    """The announced body size, or None when the server sent none (or nonsense)."""
    try:
        return int(response.headers["Content-Length"])
    except (TypeError, ValueError):
        return None
