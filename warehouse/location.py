"""Where a warehouse lives: a local directory or an object-store URI, and its local state directory.

A warehouse root is either a directory (``./astrovision-data``) or an object-store URI that Lance
opens itself (``s3://bucket/prefix``, ``gs://...``, ``az://...``, and ``s3+ddb://bucket/prefix?ddbTableName=T``
for Lance's DynamoDB commit store). Only the Lance tables (``<root>/lance/<table>.lance``) go to the
object store; what is not a Lance table stays on a local disk, in the root's LOCAL STATE directory:
the Dagster instance (SQLite, needs a POSIX file system), the file locks, caches, model artefacts and
figures. For a directory root that is the root itself (the layout is unchanged); for a URI it is
``$ASTROVISION_LOCAL_HOME`` if set, else ``~/.cache/astrovision/<scheme>/<bucket>/<prefix>``.

Credentials and endpoint come from the usual variables, read by Lance (Rust ``object_store``) and by
pyarrow's file system (listing, vacuum): ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` (an
S3-compatible server), ``AWS_ALLOW_HTTP=true`` for a plain-HTTP endpoint (loopback tests only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from warehouse.errors import WarehouseError

__all__ = ["LOCAL_HOME_ENV", "OBJECT_STORE_SCHEMES", "Location", "is_uri", "normalise_root"]

OBJECT_STORE_SCHEMES = ("s3", "s3+ddb", "gs", "az")
"""URI schemes a warehouse root may use (Lance's object stores; ``s3+ddb``: S3 with a DynamoDB commit store)."""

LOCAL_HOME_ENV = "ASTROVISION_LOCAL_HOME"
"""Environment variable naming the local state directory of an object-store warehouse."""


def is_uri(root: str | os.PathLike[str]) -> bool:
    """Whether a root names an object store (``scheme://...``) rather than a local directory."""
    return "://" in str(root) and not str(root).startswith("file://")


def normalise_root(root: str | os.PathLike[str]) -> str:
    """A root as stored in ``$ASTROVISION_HOME``: an absolute directory, or the URI without a trailing ``/``.

    Raises
    ------
    WarehouseError
        A URI whose scheme is not an object store Lance opens, or without a bucket.
    """
    text = str(root)
    if text.startswith("file://"):
        text = text[len("file://"):]
    if not is_uri(text):
        return str(Path(text).expanduser().resolve())
    parts = urlsplit(text)
    if parts.scheme not in OBJECT_STORE_SCHEMES:
        raise WarehouseError(f"warehouse root {text!r}: scheme {parts.scheme!r} is not one of "
                             f"{', '.join(s + '://' for s in OBJECT_STORE_SCHEMES)} (or a local directory)")
    if not parts.netloc:
        raise WarehouseError(f"warehouse root {text!r} names no bucket (use {parts.scheme}://BUCKET/PREFIX)")
    path = parts.path.rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{path}{query}"


def _default_local_home(uri: str) -> Path:
    parts = urlsplit(uri)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "astrovision" / parts.scheme.replace("+", "_") / parts.netloc / parts.path.strip("/")


@dataclass(frozen=True)
class Location:
    """A normalised warehouse root and its local state directory.

    Attributes
    ----------
    root : str
        An absolute directory, or an object-store URI (see :func:`normalise_root`).
    local : Path
        Where the non-table state lives (the root itself for a directory).
    """

    root: str
    local: Path

    @classmethod
    def of(cls, root: str | os.PathLike[str]) -> Location:
        """The location of a root (a directory, or a URI with its local state directory)."""
        norm = normalise_root(root)
        if not is_uri(norm):
            return cls(norm, Path(norm))
        from .settings import AstroSettings  # $ASTROVISION_LOCAL_HOME, read by the one settings object

        local = AstroSettings().local_root or _default_local_home(norm)
        return cls(norm, local)

    @property
    def remote(self) -> bool:
        """Whether the tables live on an object store."""
        return is_uri(self.root)

    def lance_uri(self, name: str = "") -> str:
        """The URI (or path) of ``<root>/lance[/<name>]``, with a URI's query (``?ddbTableName=``) kept last."""
        if not self.remote:
            return str(Path(self.root) / "lance" / name) if name else str(Path(self.root) / "lance")
        parts = urlsplit(self.root)
        path = f"{parts.path}/lance" + (f"/{name}" if name else "")
        query = f"?{parts.query}" if parts.query else ""
        return f"{parts.scheme}://{parts.netloc}{path}{query}"

    def filesystem(self):
        """A pyarrow file system and the path of ``<root>/lance`` in it (listing, stat, delete).

        For ``s3+ddb`` the objects are plain S3 objects (the DynamoDB table only orders commits).

        Raises
        ------
        WarehouseError
            The file system cannot be created (bad credentials configuration, unknown region).
        """
        import pyarrow.fs as pafs

        if not self.remote:
            return pafs.LocalFileSystem(), self.lance_uri()
        parts = urlsplit(self.root)
        scheme = "s3" if parts.scheme == "s3+ddb" else parts.scheme
        uri = f"{scheme}://{parts.netloc}{parts.path}/lance"
        try:
            fs, path = pafs.FileSystem.from_uri(uri)
        except (OSError, ValueError) as exc:
            raise WarehouseError(f"cannot open the object store of {self.root}: {exc}") from exc
        return fs, path

    def check_endpoint(self) -> None:
        """Refuse, in one line, an HTTP endpoint without ``AWS_ALLOW_HTTP`` (Lance would fail obscurely later)."""
        if not self.root.startswith("s3"):
            return
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
        allow = os.environ.get("AWS_ALLOW_HTTP", "").lower() in ("1", "true", "yes")
        if endpoint.startswith("http://") and not allow:
            raise WarehouseError(f"the S3 endpoint {endpoint} is plain HTTP: set AWS_ALLOW_HTTP=true to use it "
                                 "(loopback test servers only), or use an https:// endpoint")
