"""How the service runs: warehouse root, address, API token and the limits on what a request may ask."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from features.errors import InputError
from warehouse.sql_engine import SQLLimits

__all__ = ["TOKEN_ENV", "Settings", "is_loopback", "read_token"]

TOKEN_ENV = "ASTROVISION_API_TOKEN"
"""Environment variable holding the API token (or use ``--token-file``)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``127.0.0.0/8``, ``::1``) or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(token_file: str | os.PathLike[str] | None = None) -> str | None:
    """The API token: the first line of ``token_file``, else ``$ASTROVISION_API_TOKEN``, else None.

    Raises
    ------
    InputError
        The file is missing or empty, or the token is shorter than 16 characters.
    """
    token: str | None
    if token_file is not None:
        path = Path(token_file)
        if not path.is_file():
            raise InputError(f"token file {path} does not exist")
        token = (path.read_text().strip().splitlines() or [""])[0].strip()
        if not token:
            raise InputError(f"token file {path} is empty")
    else:
        token = os.environ.get(TOKEN_ENV) or None
    if token is not None and len(token) < 16:
        raise InputError("the API token must be at least 16 characters")
    return token


@dataclass(frozen=True)
class Settings:
    """Configuration of :func:`service.http.create_app`.

    Attributes
    ----------
    home : Path or str
        Warehouse root (a directory or an object-store URI).
    host : str
        Address the server binds; anything but loopback needs ``token``.
    token : str or None
        Bearer token every API request must carry (``Authorization: Bearer <token>``); never logged
        and not part of ``repr``.
    max_upload_bytes : int
        Largest accepted ``POST /similar`` upload (413 above); any request body may be this plus
        64 KiB, counted while it is read (chunked bodies too).
    max_image_bytes : int
        Most bytes an uploaded image may expand to (gzipped FITS decompressed, FITS data declared in
        its headers); refused with a 400 before anything is decompressed past it.
    sql_max_rows : int
        Row cap of ``POST /sql`` (a request may ask for fewer).
    sql_max_bytes : int
        Most bytes (Arrow) one ``POST /sql`` result may hold; a larger one is a 400 saying so.
    sql_timeout_s : float
        A ``POST /sql`` query (or a ``where`` filter) is interrupted after this long.
    sql_memory_limit : str
        DuckDB's ``memory_limit`` for each request's query or ``where`` filter (e.g. ``"1GB"``).
    sql_threads : int
        DuckDB threads each request's query or ``where`` filter may use.
    max_k : int
        Most neighbours a ``similar`` request may ask for.
    allow_download : bool
        Whether embedding an uploaded image may download encoder weights.
    row_map_bytes : int
        Bytes the server's read session may hold per kind of table-version data: id -> row maps, the
        ``galaxy_features`` rows (held while under half of it) and the columns a record shows of each table
        (each held while under a quarter; over it, that table's records are taken from Lance, logged).
    """

    home: Path | str
    host: str = "127.0.0.1"
    token: str | None = field(default=None, repr=False)
    max_upload_bytes: int = 8 * 1024 * 1024
    max_image_bytes: int = 64 * 1024 * 1024
    sql_max_rows: int = 10_000
    sql_max_bytes: int = 64 * 1024 * 1024
    sql_timeout_s: float = 10.0
    sql_memory_limit: str = "1GB"
    sql_threads: int = 2
    max_k: int = 200
    allow_download: bool = False
    row_map_bytes: int = 3 * 2**30

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise InputError(
                f"serving on {self.host} (not loopback) needs an API token: --token-file FILE or ${TOKEN_ENV}"
            )
        if self.sql_threads < 1 or self.sql_max_bytes < 1 or self.max_image_bytes < 1:
            raise InputError("sql_threads, sql_max_bytes and max_image_bytes must be positive")
        if self.row_map_bytes < 0:
            raise InputError(f"row_map_bytes must be 0 or more, got {self.row_map_bytes}")

    @property
    def sql_limits(self) -> SQLLimits:
        """What one request's DuckDB engine may use (:class:`warehouse.sql_engine.SQLLimits`)."""
        return SQLLimits(timeout_s=self.sql_timeout_s, memory_limit=self.sql_memory_limit,
                         threads=self.sql_threads, max_bytes=self.sql_max_bytes)
