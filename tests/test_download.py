"""Resumable download against a local HTTP server on 127.0.0.1 (never the network)."""

from __future__ import annotations

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from features.errors import InputError, OfflineError
from features.sources.download import download_file, file_digests, part_path

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.payload`` at any path, honouring ``Range: bytes=N-`` unless told otherwise."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append(self.headers.get("Range"))
        if srv.status != 200:
            self.send_response(srv.status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data, start = srv.payload, 0
        rng = self.headers.get("Range")
        if rng and not srv.ignore_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cut_next > 0:  # simulate a dropped connection part-way through
            srv.cut_next -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.payload, srv.requests, srv.status, srv.ignore_range, srv.cut_next = PAYLOAD, [], 200, False, 0
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/Galaxy10_DECals.h5"
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_full_download_verifies_both_checksums(server, tmp_path: Path) -> None:
    dest = download_file(server.url, tmp_path / "f.h5", sha256=SHA256.upper(), md5=MD5, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not part_path(dest).exists()
    assert server.requests == [None]


def test_existing_verified_file_is_not_downloaded_again(server, tmp_path: Path) -> None:
    dest = tmp_path / "f.h5"
    dest.write_bytes(PAYLOAD)
    download_file(server.url, dest, sha256=SHA256, progress=False)
    assert server.requests == []


def test_resume_after_interruption_uses_range(server, tmp_path: Path) -> None:
    dest = tmp_path / "f.h5"
    server.cut_next = 1
    with pytest.raises(OfflineError, match="resume"):
        download_file(server.url, dest, sha256=SHA256, retries=0, progress=False, chunk_size=4096)
    part = part_path(dest)
    half = part.stat().st_size
    assert 0 < half < len(PAYLOAD) and not dest.exists()
    download_file(server.url, dest, sha256=SHA256, progress=False)
    assert server.requests[-1] == f"bytes={half}-"
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_interrupted_transfer_is_resumed_within_one_call(server, tmp_path: Path) -> None:
    server.cut_next = 2
    dest = download_file(server.url, tmp_path / "f.h5", sha256=SHA256, retries=3, progress=False,
                         chunk_size=4096)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[0] is None and all(r.startswith("bytes=") for r in server.requests[1:])


def test_server_ignoring_range_restarts_cleanly(server, tmp_path: Path) -> None:
    dest = tmp_path / "f.h5"
    part_path(dest).write_bytes(PAYLOAD[:1000])
    server.ignore_range = True
    download_file(server.url, dest, sha256=SHA256, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_after_416(server, tmp_path: Path) -> None:
    dest = tmp_path / "f.h5"
    part_path(dest).write_bytes(PAYLOAD)
    download_file(server.url, dest, sha256=SHA256, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [f"bytes={len(PAYLOAD)}-"]


def test_bad_checksum_deletes_the_download(server, tmp_path: Path) -> None:
    dest = tmp_path / "f.h5"
    with pytest.raises(InputError, match="checksum mismatch") as info:
        download_file(server.url, dest, sha256="0" * 64, progress=False)
    assert not isinstance(info.value, OfflineError)
    assert str(dest) in str(info.value) or str(part_path(dest)) in str(info.value)
    assert not dest.exists() and not part_path(dest).exists()


def test_existing_file_with_bad_checksum_is_reported_and_kept(server, tmp_path: Path) -> None:
    dest = tmp_path / "f.h5"
    dest.write_bytes(b"not the file")
    with pytest.raises(InputError, match="checksum mismatch"):
        download_file(server.url, dest, md5=MD5, progress=False)
    assert dest.read_bytes() == b"not the file"


def test_http_404_is_an_input_error_not_offline(server, tmp_path: Path) -> None:
    server.status = 404
    with pytest.raises(InputError, match="HTTP 404") as info:
        download_file(server.url, tmp_path / "f.h5", progress=False)
    assert not isinstance(info.value, OfflineError)


def test_server_error_is_offline(server, tmp_path: Path) -> None:
    server.status = 503
    with pytest.raises(OfflineError, match="503"):
        download_file(server.url, tmp_path / "f.h5", retries=0, progress=False)


def test_unreachable_server_fails_with_where_to_put_the_file(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "f.h5"
    url = f"http://127.0.0.1:{_free_port()}/f.h5"
    with pytest.raises(OfflineError) as info:
        download_file(url, dest, timeout=2, progress=False, hint="then run X")
    msg = str(info.value)
    assert url in msg and str(dest) in msg and "then run X" in msg


def test_silent_server_times_out(tmp_path: Path) -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/f.h5"
        with pytest.raises(OfflineError, match="timed out"):
            download_file(url, tmp_path / "f.h5", timeout=0.3, progress=False)


def test_unresolvable_host_is_offline(tmp_path: Path) -> None:
    with pytest.raises(OfflineError, match="invalid"):
        download_file("http://host.invalid/f.h5", tmp_path / "f.h5", timeout=2, progress=False)


def test_file_digests_match_hashlib(tmp_path: Path) -> None:
    p = tmp_path / "x"
    p.write_bytes(PAYLOAD)
    assert file_digests(p, ("sha256", "md5"), chunk=4096) == {"sha256": SHA256, "md5": MD5}
