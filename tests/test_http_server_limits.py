"""What a real ``astrovision serve`` (uvicorn on loopback) does with hostile requests, read off the socket.

Out-of-range versions answer 4xx and keep the keep-alive connection; on a token server a request
without the token is answered 401 from its headers, before its body is read; a chunked body (no
``Content-Length``) is stopped at the size limit while it is read (issue 23 items 2 and 6).
"""

from __future__ import annotations

import http.client
import select
import socket
import time

import pytest

httpx = pytest.importorskip("httpx", reason="the dev extras (httpx) are not installed")
from service_data import build_service_warehouse  # noqa: E402
from test_http_server import Server  # noqa: E402

TOKEN = "a-token-of-the-limits-tests-0123"
BOUNDARY = "AstroVisionBoundary"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A server with a token and a 1 MiB upload limit."""
    from conftest import SHARED

    if not (SHARED / "data").is_dir():
        pytest.skip("../shared/data is not available")
    tmp = tmp_path_factory.mktemp("limits")
    wh, files = build_service_warehouse(tmp / "wh", SHARED / "data", n=4)
    (tmp / "token").write_text(TOKEN + "\n")
    cwd = tmp / "cwd"
    cwd.mkdir()
    srv = Server(wh.root, cwd, "--token-file", str(tmp / "token"), "--max-upload-mb", "1")
    yield srv, files
    srv.stop()


def _chunked_upload(port: int, total: int, headers: dict[str, str], chunk: int = 1 << 16) -> tuple[int, int]:
    """POST /similar a multipart body of ``total`` bytes in chunks, no Content-Length; ``(status, bytes sent)``.

    The answer is looked for after every chunk, so the bytes sent say how much the server let in.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = ["POST /similar HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked",
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}", *(f"{k}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    preamble = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
                "Content-Type: image/png\r\n\r\n").encode()
    sent, answer = 0, b""
    try:
        payload = preamble
        while sent < total:
            sock.sendall(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
            sent += len(payload)
            payload = b"\0" * chunk
            if select.select([sock], [], [], 0.01)[0]:
                break
        else:
            closing = f"\r\n--{BOUNDARY}--\r\n".encode()
            sock.sendall(f"{len(closing):x}\r\n".encode() + closing + b"\r\n0\r\n\r\n")
        answer = sock.recv(65536)
    except (BrokenPipeError, ConnectionResetError):
        answer = answer or b""
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 "), (answer[:200], sent)
    return int(answer.split(b" ", 2)[1]), sent


def test_a_request_without_the_token_is_refused_before_its_body_is_read(guarded):
    srv, _ = guarded
    status, sent = _chunked_upload(srv.port, 60 * 1024 * 1024, {})
    assert status == 401 and sent < 4 * 1024 * 1024, sent  # not the 60 MB the issue saw spooled


def test_a_chunked_upload_is_stopped_at_the_limit_while_it_is_read(guarded):
    srv, _ = guarded
    status, sent = _chunked_upload(srv.port, 100 * 1024 * 1024, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 413 and sent < 8 * 1024 * 1024, sent  # limit 1 MiB (+64 KiB), not 100 MB
    with httpx.Client(base_url=srv.url, timeout=30) as c:  # and the server goes on serving
        assert c.get("/tables", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize("request_line", [
    ("GET", "/galaxies/{g}?version=galaxies:18446744073709551616", None),
    ("GET", "/galaxies/{g}?version=galaxies:-1", None),
    ("POST", "/sql", '{"query": "SELECT 1", "versions": {"galaxies": -1}}'),
    ("POST", "/sql", '{"query": "SELECT 1", "versions": {"galaxies": 18446744073709551616}}'),
])
def test_out_of_range_versions_are_4xx_and_keep_the_connection(guarded, request_line):
    srv, files = guarded
    method, path, body = request_line
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    try:
        conn.request(method, path.format(g=next(iter(files))), body=body, headers=auth)
        first = conn.getresponse()
        text = first.read().decode()
        assert first.status in (400, 422) and "version" in text, text
        assert (first.getheader("connection") or "").lower() != "close"
        sock = conn.sock
        conn.request("GET", "/tables", headers=auth)  # the same keep-alive connection, not reset
        second = conn.getresponse()
        assert second.status == 200 and second.read() and conn.sock is sock
    finally:
        conn.close()
    time.sleep(0.1)
    assert "Exception in ASGI application" not in srv.output() and "Traceback" not in srv.output()
