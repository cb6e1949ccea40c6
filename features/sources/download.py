"""Resumable HTTP download of one large file, with a progress bar and a checksum check.

The file is written to ``<dest>.part`` and renamed to ``dest`` only once it is complete and its checksum
(SHA-256 and/or MD5, when known) matches, so a crash never leaves a file that looks finished. A later call
resumes a ``.part`` file with an HTTP ``Range: bytes=<size>-`` request (RFC 9110, section 14); a server
that ignores ranges (answers ``200`` instead of ``206``) makes the download start over.

Network failures raise :class:`features.errors.OfflineError` within about ``timeout`` seconds (the host
name is resolved under the same limit, since ``requests`` does not time out DNS look-ups), saying which URL
to fetch by hand and where to put the file.

Retries are this module's own loop, not ``urllib3.Retry``: what is retried is a transfer broken in the
middle of the body, resumed from the bytes already on disk with a new ``Range`` request, which
``Retry`` (it retries a request before its body is read) cannot do.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import requests
from tqdm.auto import tqdm

from features.errors import InputError, OfflineError

__all__ = ["download_file", "file_digests", "part_path"]

_CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_TOTAL_ONLY = re.compile(r"bytes\s+\*/(\d+)")


def part_path(dest: str | Path) -> Path:
    """The partial file a download of ``dest`` writes to (``<dest>.part``)."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def file_digests(path: str | Path, algorithms: tuple[str, ...] = ("sha256",), chunk: int = 8 * _CHUNK) -> dict[str, str]:
    """Hex digests of a file for several hashlib algorithms in one pass over its bytes.

    Parameters
    ----------
    path : str or Path
    algorithms : tuple of str
        hashlib names, e.g. ``("sha256", "md5")``.
    chunk : int
        Bytes read at a time (memory stays at one chunk).

    Returns
    -------
    dict
        ``{algorithm: lowercase hex digest}``.
    """
    hashes = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as f:
        while block := f.read(chunk):
            for h in hashes.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in hashes.items()}


def _expected(sha256: str | None, md5: str | None) -> dict[str, str]:
    return {k: v.lower() for k, v in (("sha256", sha256), ("md5", md5)) if v}


def _verify(path: Path, expected: Mapping[str, str], url: str) -> None:
    """Raise InputError if ``path`` does not have the expected digests."""
    if not expected:
        return
    got = file_digests(path, tuple(expected))
    bad = [f"{k} {got[k]} (expected {v})" for k, v in expected.items() if got[k] != v]
    if bad:
        raise InputError(f"{path}: checksum mismatch for {url}: " + "; ".join(bad))


def _resolve(url: str, timeout: float) -> None:
    """Resolve the URL's host within ``timeout`` seconds (DNS is not covered by requests' timeouts)."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise InputError(f"not a download URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    result: list[BaseException | None] = []

    def work() -> None:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            result.append(None)
        except OSError as e:
            result.append(e)

    t = threading.Thread(target=work, daemon=True, name=f"resolve-{host}")
    t.start()
    t.join(timeout)
    if not result:
        raise OSError(f"resolving {host} took more than {timeout:g} s")
    if result[0] is not None:
        raise result[0]


def _offline(url: str, dest: Path, reason: object, hint: str | None) -> OfflineError:
    msg = f"cannot download {url} ({reason}); fetch it by hand and put it at {dest}"
    if part_path(dest).exists():
        msg += f" (or run again to resume the partial file {part_path(dest)})"
    if hint:
        msg += f"; {hint}"
    return OfflineError(msg)


def _total_from(resp: requests.Response, offset: int) -> int | None:
    """Total file size from Content-Range (206) or Content-Length (200)."""
    cr = resp.headers.get("Content-Range", "")
    m = _CONTENT_RANGE.match(cr)
    if m and m.group(3) != "*":
        return int(m.group(3))
    length = resp.headers.get("Content-Length")
    if length is not None and length.isdigit():
        return int(length) + (offset if resp.status_code == 206 else 0)
    return None


def _fetch_once(url: str, part: Path, timeout: float, chunk: int, progress: bool, desc: str) -> bool:
    """One HTTP request that appends to ``part``; True when the file is complete."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with requests.get(url, headers=headers, stream=True, timeout=(timeout, timeout), allow_redirects=True) as resp:
        if resp.status_code == 416 and offset:
            # The part file already holds every byte (or more than the file has): check the total size.
            m = _TOTAL_ONLY.match(resp.headers.get("Content-Range", ""))
            if m and int(m.group(1)) == offset:
                return True
            part.unlink()  # inconsistent with the remote file: start over
            return False
        if resp.status_code >= 500:
            raise requests.ConnectionError(f"HTTP {resp.status_code} from the server")
        if resp.status_code >= 400:
            raise InputError(f"HTTP {resp.status_code} for {url}: the file is not available there")
        if resp.status_code == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                part.unlink()  # the server answered another range than asked: start over
                return False
            mode = "ab"
        else:  # 200: the server ignores ranges (or there was nothing to resume)
            offset, mode = 0, "wb"
        total = _total_from(resp, offset)
        with (
            open(part, mode) as f,
            tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                 disable=not progress) as bar,
        ):
            for block in resp.iter_content(chunk_size=chunk):
                f.write(block)
                bar.update(len(block))
        size = part.stat().st_size
        if total is not None and size < total:
            raise requests.ConnectionError(f"connection closed after {size} of {total} bytes")
        if total is not None and size > total:
            part.unlink()
            return False
        return True


def download_file(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    timeout: float = 10.0,
    retries: int = 3,
    progress: bool = True,
    chunk_size: int = _CHUNK,
    hint: str | None = None,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial download and checking the checksum.

    Parameters
    ----------
    url : str
        HTTP(S) address of the file.
    dest : str or Path
        Where the finished file goes. Bytes arrive in ``<dest>.part`` first.
    sha256, md5 : str, optional
        Expected hex digests (case-insensitive); every one given is checked. With neither, the file is
        accepted unchecked.
    timeout : float
        Seconds allowed for the name look-up, the connection, and each read; an unreachable host fails
        after about this long.
    retries : int
        How many times an interrupted transfer is resumed within this call before giving up (the
        ``.part`` file is kept, so a later call resumes too).
    progress : bool
        Show a tqdm progress bar (``TQDM_DISABLE=1`` hides it as well).
    chunk_size : int
        Bytes per read from the socket.
    hint : str, optional
        Extra advice appended to the offline error (e.g. which command reads a hand-placed file).

    Returns
    -------
    Path
        ``dest``. If ``dest`` already exists and matches the checksum, nothing is downloaded.

    Raises
    ------
    OfflineError
        The host cannot be resolved or reached, the server fails (5xx), or the transfer keeps breaking.
    InputError
        The server refuses the file (4xx), or the finished file (or an existing ``dest``) fails the
        checksum; a finished download that fails is deleted, an existing ``dest`` is left alone.
    """
    dest = Path(dest)
    expected = _expected(sha256, md5)
    if dest.exists():
        _verify(dest, expected, url)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    try:
        _resolve(url, timeout)
    except OSError as e:
        raise _offline(url, dest, e, hint) from e
    last: BaseException | None = None
    for _attempt in range(retries + 1):
        try:
            if _fetch_once(url, part, timeout, chunk_size, progress, dest.name):
                break
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
            last = e
            if not part.exists() or part.stat().st_size == 0:
                part.unlink(missing_ok=True)
                raise _offline(url, dest, e, hint) from e  # nothing arrived: the server is unreachable
        except requests.RequestException as e:
            raise _offline(url, dest, e, hint) from e
    else:
        raise _offline(url, dest, f"interrupted {retries + 1} times, last: {last}", hint)
    try:
        _verify(part, expected, url)
    except InputError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest
