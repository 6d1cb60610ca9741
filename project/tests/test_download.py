"""Tests for data.download against a real, scripted HTTP server on 127.0.0.1."""

import contextlib
import hashlib
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from harness.inputs import sha256_of

from project.data.download import DataSourceError, SourceFile, fetch_source

BODY = bytes(range(256)) * 40 + b"To be, or not to be\n"  # ~10 kB, several TCP segments
DIGEST = hashlib.sha256(BODY).hexdigest()
DATASET = "tinytext"
FILENAME = "input.txt"

SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclass(frozen=True)
class Reply:
    """One scripted response."""

    status: int = 200
    body: bytes = BODY
    claim_bytes: int = 0  # announce this many extra bytes in Content-Length, then hang up
    delay_s: float = 0.0  # wait before answering (to trip the client's timeout)


class ScriptedServer(ThreadingHTTPServer):
    """An HTTP server that answers GETs from a queue of replies and counts the requests."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.replies: deque[Reply] = deque()
        self.requests = 0  # the client under test is sequential, so no lock is needed

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/{DATASET}/{FILENAME}"

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)


class _ScriptedHandler(BaseHTTPRequestHandler):
    server: ScriptedServer

    def do_GET(self) -> None:
        self.server.requests += 1
        # An unscripted request gets a 410, which is not retried, so it shows up as a failure.
        reply = self.server.replies.popleft() if self.server.replies else Reply(410, b"")
        time.sleep(reply.delay_s)
        with contextlib.suppress(ConnectionError):  # after a delay the client may have gone
            self.send_response(reply.status)
            self.send_header("Content-Length", str(len(reply.body) + reply.claim_bytes))
            self.end_headers()
            self.wfile.write(reply.body)
        self.close_connection = True  # with claim_bytes > 0 the client sees a truncated body

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    httpd = ScriptedServer()
    # A short poll interval makes shutdown() return quickly at teardown.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def fetch(tmp_path: Path, **overrides: Any) -> SourceFile:
    """fetch_source with test defaults: no sources, a cache under tmp_path, fast retries."""
    kwargs: dict[str, Any] = {
        "url": None,
        "sha256": DIGEST,
        "filename": FILENAME,
        "dataset": DATASET,
        "local_file": None,
        "mirror_dir": None,
        "cache_dir": tmp_path / "cache",
        "timeout_s": 2.0,
        "backoff_s": 0.01,
    }
    kwargs.update(overrides)
    return fetch_source(**kwargs)


def cache_folder(tmp_path: Path) -> Path:
    return tmp_path / "cache" / DATASET


def closed_port_url() -> str:
    """A URL on a port that nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{FILENAME}"


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_sha256_of_matches_hashlib(tmp_path: Path) -> None:
    path = write(tmp_path / "f.bin", BODY * 200)  # larger than one read chunk
    assert sha256_of(path) == hashlib.sha256(BODY * 200).hexdigest()


def test_download_lands_in_cache_and_is_reused(tmp_path: Path, server: ScriptedServer) -> None:
    server.script(Reply())
    first = fetch(tmp_path, url=server.url)
    assert first == SourceFile(cache_folder(tmp_path) / FILENAME, DIGEST, "download", server.url)
    assert first.path.read_bytes() == BODY
    assert sha256_of(first.path) == DIGEST

    second = fetch(tmp_path, url=server.url)
    assert second.origin == "cache"
    assert second.path == first.path
    assert server.requests == 1  # the cache hit made no request


def test_wrong_digest_leaves_nothing_behind(tmp_path: Path, server: ScriptedServer) -> None:
    server.script(Reply(body=b"not the text you are looking for\n"))
    actual = hashlib.sha256(b"not the text you are looking for\n").hexdigest()
    with pytest.raises(DataSourceError) as info:
        fetch(tmp_path, url=server.url)
    assert DIGEST in str(info.value)
    assert actual in str(info.value)
    assert "data.sha256: null" in str(info.value)
    assert server.requests == 1  # a complete but wrong body is not retried
    assert list(cache_folder(tmp_path).iterdir()) == []


@pytest.mark.parametrize("status", [503, 429])
def test_transient_status_is_retried(tmp_path: Path, server: ScriptedServer, status: int) -> None:
    server.script(Reply(status, b"busy"), Reply())
    source = fetch(tmp_path, url=server.url)
    assert source.origin == "download"
    assert source.path.read_bytes() == BODY
    assert server.requests == 2


def test_not_found_is_not_retried(tmp_path: Path, server: ScriptedServer) -> None:
    server.script(Reply(404, b"no such file"))
    with pytest.raises(DataSourceError, match="404") as info:
        fetch(tmp_path, url=server.url)
    assert "data.local_file" in str(info.value)
    assert server.requests == 1
    assert list(cache_folder(tmp_path).iterdir()) == []


def test_truncated_body_is_retried(tmp_path: Path, server: ScriptedServer) -> None:
    server.script(Reply(body=BODY[:1000], claim_bytes=len(BODY) - 1000), Reply())
    source = fetch(tmp_path, url=server.url)
    assert source.path.read_bytes() == BODY
    assert server.requests == 2


def test_always_truncated_gives_up(tmp_path: Path, server: ScriptedServer) -> None:
    server.script(*[Reply(body=BODY[:1000], claim_bytes=len(BODY) - 1000)] * 3)
    with pytest.raises(DataSourceError, match="3 attempts") as info:
        fetch(tmp_path, url=server.url, retries=2)
    assert "1000 of" in str(info.value)
    assert server.requests == 3
    assert list(cache_folder(tmp_path).iterdir()) == []


def test_timeout_is_retried(tmp_path: Path, server: ScriptedServer) -> None:
    server.script(Reply(delay_s=0.5), Reply())
    source = fetch(tmp_path, url=server.url, timeout_s=0.1)
    assert source.path.read_bytes() == BODY
    assert server.requests == 2


def test_offline_without_copies_names_the_fixes(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    with pytest.raises(DataSourceError) as info:
        fetch(tmp_path, url=closed_port_url(), mirror_dir=mirror, mirror_optional=True, retries=1)
    message = str(info.value)
    for needle in ("data.local_file", "data.mirror_dir", "CHARGPT_DATA_MIRROR", "--data-source"):
        assert needle in message
    assert str(mirror / DATASET / FILENAME) in message  # where it looked
    assert str(cache_folder(tmp_path) / FILENAME) in message
    assert "2 attempts" in message
    assert not (cache_folder(tmp_path) / FILENAME).exists()


def test_no_url_and_no_copy_fails(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="CHARGPT_DATA_MIRROR"):
        fetch(tmp_path)


def test_local_file_is_preferred(tmp_path: Path, server: ScriptedServer) -> None:
    local = write(tmp_path / "my" / "copy.txt", BODY)
    source = fetch(tmp_path, url=server.url, local_file=local)
    assert source == SourceFile(local, DIGEST, "local_file", str(local))
    assert server.requests == 0


def test_local_file_with_wrong_digest_is_an_error(tmp_path: Path, server: ScriptedServer) -> None:
    local = write(tmp_path / "copy.txt", b"edited\n")
    actual = hashlib.sha256(b"edited\n").hexdigest()
    with pytest.raises(DataSourceError, match=rf"data\.sha256={actual}") as info:
        fetch(tmp_path, url=server.url, local_file=local)
    assert "data.sha256: null" in str(info.value)
    assert server.requests == 0  # an explicit local file never falls through to the download


def test_missing_local_file_is_an_error(tmp_path: Path, server: ScriptedServer) -> None:
    missing = tmp_path / "nowhere.txt"
    with pytest.raises(DataSourceError, match=r"data\.local_file") as info:
        fetch(tmp_path, url=server.url, local_file=missing)
    assert str(missing) in str(info.value)
    assert server.requests == 0


def test_mirror_is_used(tmp_path: Path, server: ScriptedServer) -> None:
    mirror = tmp_path / "mirror"
    mirrored = write(mirror / DATASET / FILENAME, BODY)
    source = fetch(tmp_path, url=server.url, mirror_dir=mirror)
    assert source == SourceFile(mirrored, DIGEST, "mirror", str(mirrored))
    assert server.requests == 0


def test_mirror_with_wrong_digest_is_an_error(tmp_path: Path, server: ScriptedServer) -> None:
    mirror = tmp_path / "mirror"
    mirrored = write(mirror / DATASET / FILENAME, b"stale mirror\n")
    with pytest.raises(DataSourceError, match="mirror") as info:
        fetch(tmp_path, url=server.url, mirror_dir=mirror)
    assert str(mirrored) in str(info.value)
    assert "data.sha256: null" in str(info.value)
    assert server.requests == 0


def test_optional_mirror_without_the_file_falls_through(
    tmp_path: Path, server: ScriptedServer
) -> None:
    server.script(Reply())
    source = fetch(tmp_path, url=server.url, mirror_dir=tmp_path / "empty", mirror_optional=True)
    assert source.origin == "download"


@pytest.mark.parametrize("make_folder", [True, False])
def test_explicit_mirror_without_the_file_fails_at_once(
    tmp_path: Path, server: ScriptedServer, make_folder: bool
) -> None:
    mirror = tmp_path / "mirror"
    if make_folder:
        write(mirror / "other" / FILENAME, BODY)  # the text under another dataset's name
    with pytest.raises(DataSourceError) as info:
        fetch(tmp_path, url=server.url, mirror_dir=mirror)
    message = str(info.value)
    assert f"expected the file {mirror / DATASET / FILENAME}" in message
    assert "<mirror>/<dataset>/<filename>" in message
    assert "data.mirror_dir" in message and "CHARGPT_DATA_MIRROR" in message
    assert server.requests == 0  # no download, so no retries before the message
    assert not (tmp_path / "cache").exists()


def test_unwritable_cache_is_named_with_the_fix(tmp_path: Path, server: ScriptedServer) -> None:
    blocker = write(tmp_path / "a-file", b"")  # a folder under a file fails for root too
    cache = blocker / "cache"
    with pytest.raises(DataSourceError) as info:
        fetch(tmp_path, url=server.url, cache_dir=cache)
    message = str(info.value)
    assert f"cache folder {cache / DATASET} cannot be created or written" in message
    assert "data.cache_dir" in message and "CHARGPT_DATA_CACHE" in message
    assert server.requests == 0


def test_unwritable_cache_is_no_error_without_a_download(
    tmp_path: Path, server: ScriptedServer
) -> None:
    cache = write(tmp_path / "a-file", b"") / "cache"
    mirror = tmp_path / "mirror"
    write(mirror / DATASET / FILENAME, BODY)
    source = fetch(tmp_path, url=server.url, mirror_dir=mirror, cache_dir=cache)
    assert source.origin == "mirror"
    local = write(tmp_path / "copy.txt", BODY)
    assert fetch(tmp_path, url=server.url, local_file=local, cache_dir=cache).origin == "local_file"
    assert server.requests == 0


def test_corrupt_cache_is_replaced(tmp_path: Path, server: ScriptedServer) -> None:
    write(cache_folder(tmp_path) / FILENAME, BODY[:-1])
    server.script(Reply())
    source = fetch(tmp_path, url=server.url)
    assert source.origin == "download"
    assert source.path.read_bytes() == BODY
    assert server.requests == 1


# -- no expected digest (data.sha256: null) -------------------------------------------------

OWN_TEXT = "Mon propre texte — pas Shakespeare.\nZweite Zeile: Grüße! 😀\n".encode()
OWN_DIGEST = hashlib.sha256(OWN_TEXT).hexdigest()


def test_no_digest_accepts_any_local_file(tmp_path: Path, server: ScriptedServer) -> None:
    local = write(tmp_path / "mine.txt", OWN_TEXT)
    source = fetch(tmp_path, url=server.url, sha256=None, local_file=local)
    assert source == SourceFile(local, OWN_DIGEST, "local_file", str(local))
    assert server.requests == 0
    assert not cache_folder(tmp_path).exists()  # nothing is copied into the cache


def test_no_digest_accepts_any_mirror_file(tmp_path: Path, server: ScriptedServer) -> None:
    mirrored = write(tmp_path / "mirror" / DATASET / FILENAME, OWN_TEXT)
    source = fetch(tmp_path, url=server.url, sha256=None, mirror_dir=tmp_path / "mirror")
    assert source == SourceFile(mirrored, OWN_DIGEST, "mirror", str(mirrored))
    assert server.requests == 0


def test_no_digest_accepts_any_cached_file(tmp_path: Path, server: ScriptedServer) -> None:
    cached = write(cache_folder(tmp_path) / FILENAME, OWN_TEXT)
    source = fetch(tmp_path, url=server.url, sha256=None)
    assert source == SourceFile(cached, OWN_DIGEST, "cache", str(cached))
    assert server.requests == 0


def test_no_digest_download_is_rechecked_by_a_run_with_a_digest(
    tmp_path: Path, server: ScriptedServer
) -> None:
    server.script(Reply(body=OWN_TEXT), Reply())
    first = fetch(tmp_path, url=server.url, sha256=None)
    cached = cache_folder(tmp_path) / FILENAME
    assert first == SourceFile(cached, OWN_DIGEST, "download", server.url)
    assert first.path.read_bytes() == OWN_TEXT
    # A run that expects this file's digest may use the cached copy: it verifies.
    assert fetch(tmp_path, url=server.url, sha256=OWN_DIGEST.upper()).origin == "cache"
    assert server.requests == 1
    # A run that expects another digest does not trust it: it is replaced by a verified download.
    second = fetch(tmp_path, url=server.url)
    assert second == SourceFile(first.path, DIGEST, "download", server.url)
    assert second.path.read_bytes() == BODY
    assert server.requests == 2


def test_no_digest_truncated_download_is_still_rejected(
    tmp_path: Path, server: ScriptedServer
) -> None:
    server.script(*[Reply(body=BODY[:1000], claim_bytes=len(BODY) - 1000)] * 2)
    with pytest.raises(DataSourceError, match="2 attempts") as info:
        fetch(tmp_path, url=server.url, sha256=None, retries=1)
    assert "SHA-256 None" not in str(info.value)
    assert list(cache_folder(tmp_path).iterdir()) == []


def test_real_mirror_copy_verifies(tmp_path: Path) -> None:
    if not (SHARED_DATA / "tinyshakespeare" / "input.txt").is_file():
        pytest.skip(f"no shared mirror copy of Tiny Shakespeare under {SHARED_DATA}")
    source = fetch_source(
        url=None,
        sha256=SHAKESPEARE_SHA256,
        filename="input.txt",
        dataset="tinyshakespeare",
        local_file=None,
        mirror_dir=SHARED_DATA,
        cache_dir=tmp_path / "cache",
    )
    assert source.origin == "mirror"
    assert source.sha256 == SHAKESPEARE_SHA256
    assert len(source.path.read_text(encoding="utf-8")) == 1_115_394
