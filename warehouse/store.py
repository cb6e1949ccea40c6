"""The warehouse: versioned Lance tables under one root directory.

Layout of a root (default ``./astrovision-data``, else ``$ASTROVISION_HOME``, else ``--home``)::

    <root>/lance/<table>.lance   one Lance dataset per table (storage of record)
    <root>/models/               model artefacts (checkpoints, configs)
    <root>/dagster/              the Dagster instance (runs, events, schedules)
    <root>/cache/                downloads and raw service responses

Writes are idempotent upserts keyed by each table's key columns (Lance ``merge_insert``), retried by
Lance on a commit conflict (``conflict_retries``), so Dagster's parallel steps can write the same table at
once and a re-run leaves the same rows. :meth:`TableStore.replace` swaps a whole range of rows (a split
set, a model's predictions) in one commit. A Lance commit is atomic: a crash mid-write leaves the
previous version readable.
A table's first write (its creation) holds a file lock under ``<local>/locks/`` (:mod:`warehouse.locks`),
since Lance turns a racing second creation into an overwrite; a creation that lost such a race anyway
(writers on two machines sharing an object-store root) merges the overwritten rows back.

The root may be an object-store URI (``s3://bucket/prefix``): the tables are then read and written by
Lance on the object store and everything else stays in a local state directory
(:mod:`warehouse.location`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import lance
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from warehouse import schemas
from warehouse.errors import WarehouseError, is_commit_conflict
from warehouse.images import decode_image
from warehouse.location import Location, is_uri
from warehouse.locks import file_lock
from warehouse.provenance import new_run_id
from warehouse.rows import to_table, validated_stream
from warehouse.settings import DEFAULT_HOME, AstroSettings

if TYPE_CHECKING:
    import polars as pl

    from warehouse.rows import RowsLike

__all__ = ["DEFAULT_ROOT", "TableStore", "resolve_root"]

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path(DEFAULT_HOME)
_CONFLICT_RETRIES = 12
"""Commit conflicts Lance retries (re-reading the table, re-applying the merge) before a write fails."""
_RETRY_TIMEOUT = timedelta(seconds=120)
"""Lance stops retrying after this long (Dagster's parallel shard steps can queue on one table)."""

_OVERWRITE_RETRIES = 3
"""Merges restarted after a racing creation on another machine overwrote the version they read."""


def _overwritten(exc: BaseException) -> bool:
    """Whether a Lance write failed because a racing creation overwrote the version it read (retry it)."""
    return "incompatible with concurrent transaction Overwrite" in str(exc)


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path | str:
    """The warehouse root: ``root`` if given, else ``$ASTROVISION_HOME``, else ``./astrovision-data``.

    A directory comes back as an absolute ``Path``, an object-store URI (``s3://bucket/prefix``) as
    its normalised string (:func:`warehouse.location.normalise_root`). The environment is read through
    :class:`warehouse.settings.AstroSettings` (only when ``root`` is None).
    """
    norm = AstroSettings.resolve(root).home
    return norm if is_uri(norm) else Path(norm)


class TableStore:
    """A warehouse root holding versioned Lance tables: open, read, take, upsert, replace, delete, versions.

    Storage only: it knows nothing of SQL, search or vacuum, which are built on it
    (:class:`warehouse.Warehouse` adds them). Open with :meth:`open`; every method is safe to call
    from several processes at once (Lance's optimistic concurrency), and readers never block writers.
    """

    def __init__(self, root: Path | str, local_root: Path | None = None) -> None:
        loc = Location.of(root)
        if local_root is not None:
            loc = Location(loc.root, Path(local_root))
        self.location = loc
        self.root: Path | str = loc.root if loc.remote else Path(loc.root)
        """The directory, or the object-store URI, of the tables."""
        self.local_root = loc.local
        """Where the non-table state lives (the root itself for a directory; see :mod:`warehouse.location`)."""
        self.lance_dir: Path | str = loc.lance_uri() if loc.remote else Path(loc.lance_uri())
        self.models_dir = loc.local / "models"
        self.dagster_home = loc.local / "dagster"
        self.cache_dir = loc.local / "cache"
        self._fs: tuple[Any, str] | None = None
        self._id_index: dict[tuple[str, int], dict[str, int]] = {}
        self._pins: dict[str, int] = {}
        self._snapshot: dict[str, lance.LanceDataset] = {}

    # ------------------------------------------------------------------------------------ opening
    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None, local_root: Path | None = None) -> Self:
        """Create (if needed) and open a warehouse root.

        Parameters
        ----------
        root : path, optional
            See :func:`resolve_root`.
        local_root : Path, optional
            Local state folder of an object-store root (default: see :class:`warehouse.location.Location`).
        """
        path = resolve_root(root)
        wh = cls(path, local_root)
        if wh.location.remote:
            wh._check_bucket()
        elif Path(path).exists() and not Path(path).is_dir():
            raise WarehouseError(f"warehouse root {path} exists and is not a directory")
        else:
            Path(wh.lance_dir).mkdir(parents=True, exist_ok=True)
        for sub in (wh.models_dir, wh.dagster_home, wh.cache_dir):
            sub.mkdir(parents=True, exist_ok=True)
        return wh

    def filesystem(self) -> tuple[Any, str]:
        """The pyarrow file system of the tables and the path of ``lance/`` in it (made once)."""
        if self._fs is None:
            self._fs = self.location.filesystem()
        return self._fs

    def _check_bucket(self) -> None:
        """One line when an object-store root cannot be used: plain HTTP not allowed, unreachable, no bucket."""
        self.location.check_endpoint()
        fs, lance_path = self.filesystem()
        bucket = lance_path.split("/", 1)[0]
        try:
            info = fs.get_file_info(bucket)
        except OSError as exc:
            raise WarehouseError(f"cannot reach the warehouse root {self.root}: {str(exc).splitlines()[0]}") from exc
        if info.type == pafs.FileType.NotFound:
            raise WarehouseError(f"warehouse root {self.root}: bucket {bucket!r} does not exist (create it first)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    # ------------------------------------------------------------------------------------ tables
    def table_uri(self, table: str) -> str:
        """Path (local root) or URI (object-store root) of a table's Lance dataset."""
        if not table.replace("_", "").isalnum():
            raise WarehouseError(f"invalid table name {table!r}")
        return self.location.lance_uri(f"{table}.lance")

    def exists(self, table: str) -> bool:
        """Whether a table has been written at least once."""
        if not self.location.remote:
            return (Path(self.table_uri(table)) / "_versions").is_dir()
        fs, lance_path = self.filesystem()
        self.table_uri(table)  # checks the name
        return fs.get_file_info(f"{lance_path}/{table}.lance/_versions").type == pafs.FileType.Directory

    def tables(self) -> list[str]:
        """Names of the tables that exist, sorted."""
        if not self.location.remote:
            return sorted(p.name[: -len(".lance")] for p in Path(self.lance_dir).glob("*.lance")
                          if (p / "_versions").is_dir())
        fs, lance_path = self.filesystem()
        found = fs.get_file_info(pafs.FileSelector(lance_path, allow_not_found=True))
        names = [i.base_name[: -len(".lance")] for i in found
                 if i.type == pafs.FileType.Directory and i.base_name.endswith(".lance")]
        return sorted(n for n in names if n.replace("_", "").isalnum() and self.exists(n))

    def pinned(self, versions: Mapping[str, int] | None = None) -> TableStore:
        """This warehouse with every read of a table at one version: a consistent snapshot.

        Parameters
        ----------
        versions : mapping of table -> version, optional
            Versions to read (time travel); tables not named are read at their version now. Every
            ``dataset`` / ``read`` / ``take`` / SQL / exact-search call of the returned object then
            sees the same table versions, whatever is committed meanwhile (one HTTP request's view).

        Raises
        ------
        WarehouseError
            A named table does not exist, or has no such version.
        """
        pins = self.versions()
        opened: dict[str, lance.LanceDataset] = {}
        for table, version in (versions or {}).items():
            if not 0 <= int(version) < 2**64:  # Lance versions are u64: outside, its binding raises OverflowError
                raise WarehouseError(f"table {table!r} has no version {version} (versions are 1, 2, ...)")
            try:
                opened[table] = self.dataset(table, int(version))  # checks that it exists
                pins[table] = opened[table].version
            except WarehouseError:
                if table not in pins:
                    raise
                raise WarehouseError(f"table {table!r} has no version {version} (latest: {pins[table]}; "
                                     "old versions may have been vacuumed)") from None
        clone = type(self)(self.root, local_root=self.local_root)
        clone._fs = self._fs
        clone._id_index = self._id_index
        clone._pins = pins
        clone._snapshot = opened
        return clone

    @property
    def pins(self) -> dict[str, int]:
        """The table versions a :meth:`pinned` warehouse reads (empty: the latest of each)."""
        return dict(self._pins)

    def dataset(self, table: str, version: int | None = None) -> lance.LanceDataset:
        """The Lance dataset of a table, at its latest (or :meth:`pinned`) version or at ``version``."""
        pinned = version is None and table in self._pins
        if pinned:
            version = self._pins[table]
            if table in self._snapshot:
                return self._snapshot[table]
        if not self.exists(table):
            raise WarehouseError(
                f"table {table!r} does not exist in {self.root} (tables: {', '.join(self.tables()) or 'none'})"
            )
        try:
            ds = lance.dataset(self.table_uri(table), version=version)
        except (ValueError, OSError) as exc:
            raise WarehouseError(f"table {table!r} has no version {version}: {exc}") from exc
        if pinned:
            self._snapshot[table] = ds  # one snapshot's datasets, opened once (it lives for one request)
        return ds

    def versions(self) -> dict[str, int]:
        """The latest Lance version of every existing table."""
        return {t: self.dataset(t).version for t in self.tables()}

    def history(self, table: str) -> list[dict[str, Any]]:
        """Every version of a table: ``version``, ``timestamp`` and row count."""
        return [
            {"version": v["version"], "timestamp": v["timestamp"], "rows": int(v["metadata"].get("total_rows", -1))}
            for v in self.dataset(table).versions()
        ]

    def count(self, table: str, where: str | None = None) -> int:
        """Number of rows (0 for a table that does not exist yet)."""
        if not self.exists(table):
            return 0
        return self.dataset(table).count_rows(filter=where)

    # ------------------------------------------------------------------------------------ reading
    def read(
        self,
        table: str,
        columns: list[str] | None = None,
        where: str | None = None,
        version: int | None = None,
    ) -> pa.Table:
        """Read a table (or some columns / rows of it) as Arrow.

        Parameters
        ----------
        table : str
        columns : list of str, optional
        where : str, optional
            A SQL predicate in Lance's filter dialect, e.g. ``"shard = 'demo-00000'"``.
        version : int, optional
            Read the table as it was at this version.
        """
        ds = self.dataset(table, version)
        try:
            return ds.to_table(columns=columns, filter=where)
        except (ValueError, OSError) as exc:
            raise WarehouseError(f"cannot read {table!r} with columns={columns} where={where!r}: {exc}") from exc

    def read_polars(self, table: str, **kwargs: Any) -> pl.DataFrame:
        """:meth:`read` as a polars DataFrame."""
        import polars as pl  # only here: reading a record or searching needs no polars

        return pl.from_arrow(self.read(table, **kwargs))  # type: ignore[return-value]

    def _row_index(self, table: str, ds: lance.LanceDataset) -> dict[str, int]:
        key = (table, ds.version)
        index = self._id_index.get(key)
        if index is None:
            ids = ds.to_table(columns=["galaxy_id"]).column("galaxy_id").to_pylist()
            index = {gid: i for i, gid in enumerate(ids)}
            self._id_index = {k: v for k, v in self._id_index.items() if k[0] != table}
            self._id_index[key] = index
        return index

    def has_ids(self, table: str, galaxy_ids: Sequence[str]) -> list[str]:
        """The ids among ``galaxy_ids`` that have a row in ``table`` (in the given order)."""
        if not self.exists(table):
            return []
        index = self._row_index(table, self.dataset(table))
        return [g for g in galaxy_ids if g in index]

    def take(self, table: str, galaxy_ids: Sequence[str], columns: list[str] | None = None) -> pa.Table:
        """Rows of a ``galaxy_id``-keyed table for the given ids, in that order (random access).

        The id -> row map is built once per table version and cached, so repeated calls cost one
        Lance ``take`` each.
        """
        ds = self.dataset(table)
        index = self._row_index(table, ds)
        missing = [g for g in galaxy_ids if g not in index]
        if missing:
            raise WarehouseError(f"{len(missing)} galaxy id(s) not in {table!r}, e.g. {missing[:3]}")
        return ds.take([index[g] for g in galaxy_ids], columns=columns)

    def read_images(self, galaxy_ids: Sequence[str], *, threads: int = 1) -> list[np.ndarray]:
        """Decoded images for the given ids, in order (``(H, W, C)`` arrays).

        ``threads`` > 1 decodes on that many threads (Pillow releases the GIL while it inflates a PNG:
        1.8x on 2 threads for 600 demo images); the arrays are the same.
        """
        rows = self.take("images", galaxy_ids, columns=["encoding", "data", "channels"])
        items = list(zip(rows.column("encoding").to_pylist(), rows.column("data").to_pylist(),
                         rows.column("channels").to_pylist()))

        def one(item: tuple[str, bytes, int | None]) -> np.ndarray:
            return decode_image(item[0], item[1], channels=item[2])

        if threads > 1 and len(items) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(int(threads), len(items))) as pool:
                return list(pool.map(one, items))
        return [one(item) for item in items]

    def read_image(self, galaxy_id: str) -> np.ndarray:
        """One galaxy's image as an ``(H, W, C)`` array."""
        return self.read_images([galaxy_id])[0]

    # ------------------------------------------------------------------------------------ writing
    def upsert(
        self,
        table: str,
        rows: RowsLike,
        *,
        run_id: str | None = None,
        spec: schemas.TableSpec | None = None,
    ) -> int:
        """Insert or replace rows by the table's key columns; returns the new table version.

        Idempotent: upserting the same rows twice leaves the same rows (only provenance columns change).
        Rows are validated against the registered schema first; nothing is written if any row is bad.
        A Lance commit conflict with a concurrent writer is retried by Lance (``conflict_retries``).
        A ``RecordBatchReader`` is streamed (bounded memory) and validated batch by batch; an error in
        any batch aborts the write before its commit, so the previous version stays current.

        Parameters
        ----------
        table : str
            A registered table name.
        rows : pyarrow.Table, RecordBatchReader, polars.DataFrame or list of dict
        run_id : str, optional
            The Dagster run id (or any id) recorded with every row; a ``manual-...`` id otherwise.
        spec : TableSpec, optional
            For tables whose schema is made at run time (one embeddings table per encoder).
        """
        spec = spec or schemas.get(table)
        run_id = run_id or new_run_id()
        if isinstance(rows, pa.RecordBatchReader):
            errors: list[WarehouseError] = []
            try:
                return self._write(table, spec, validated_stream(spec, rows, run_id, errors))
            except OSError:
                if errors:  # Lance wraps the validation error in an OSError: raise the one-line one
                    raise errors[0] from None
                raise
        data = to_table(spec, rows, run_id)
        if data.num_rows == 0:
            return self.dataset(table).version if self.exists(table) else 0
        return self._write(table, spec, data)

    def replace(
        self,
        table: str,
        rows: RowsLike,
        *,
        where: str,
        run_id: str | None = None,
        spec: schemas.TableSpec | None = None,
    ) -> int:
        """Make the rows matching ``where`` exactly ``rows``, in one commit; returns the new version.

        One Lance ``merge_insert`` on the key columns: rows whose key exists are updated, new keys are
        inserted, and stored rows matching ``where`` whose key is not among ``rows`` are deleted
        (``when_not_matched_by_source_delete``). Readers see the old range or the new one, never a mix;
        rows outside ``where`` are untouched. ``rows`` should themselves satisfy ``where`` (a row
        outside it is upserted like any other). Validation and conflict retries as :meth:`upsert`.

        Parameters
        ----------
        table : str
        rows : pyarrow.Table, polars.DataFrame or list of dict
            The whole new content of the range (empty: the range is deleted).
        where : str
            The range, in Lance's filter dialect, e.g. ``"split_name = 'label-s0'"``.
        run_id, spec
            See :meth:`upsert`.
        """
        spec = spec or schemas.get(table)
        data = to_table(spec, rows, run_id or new_run_id())
        if data.num_rows == 0:
            return self.delete(table, where)
        return self._write(table, spec, data, delete_where=where)

    def _write(self, table: str, spec: schemas.TableSpec, data: pa.Table | pa.RecordBatchReader,
               delete_where: str | None = None) -> int:
        if not self.exists(table):
            # Lance commits a racing second "create" as an overwrite of the first: create under a lock,
            # and merge into a table another process created meanwhile.
            with file_lock(self.local_root, f"table-{table}"):
                if not self.exists(table):
                    version = self._create(table, spec, data)
                    if version is not None:
                        return version
            log.debug("table %s was created concurrently; merging", table)
        for attempt in range(_OVERWRITE_RETRIES + 1):
            try:
                return self._merge(table, spec, data, delete_where)
            except (OSError, RuntimeError, ValueError) as exc:
                # A creation on another machine that raced ours committed as an overwrite after our read
                # version; it merges the overwritten rows back (see _create), and this merge starts again.
                if not _overwritten(exc) or isinstance(data, pa.RecordBatchReader) or attempt == _OVERWRITE_RETRIES:
                    raise
                log.warning("%s: a concurrent creation overwrote the version this write read; retrying", table)
        raise AssertionError("unreachable")  # pragma: no cover

    def _create(self, table: str, spec: schemas.TableSpec, data: pa.Table | pa.RecordBatchReader) -> int | None:
        """Create a table with ``data``; its version, or None when another writer created it first.

        The file lock only serialises the processes of one machine. Writers on several machines sharing
        an object-store root can still race: Lance then refuses the later create ("already exists": the
        caller merges instead) or commits it as an overwrite of the earlier one, version > 1; the rows
        of the overwritten version are then merged back (keys this write also holds keep its values),
        so no committed row is lost.
        """
        uri = self.table_uri(table)
        try:
            version = lance.write_dataset(data, uri, schema=spec.schema, mode="create").version
        except OSError as exc:
            if "already exists" not in str(exc):
                raise
            if isinstance(data, pa.RecordBatchReader):
                raise WarehouseError(f"{table}: created by another writer while this stream was written; "
                                     "nothing was written, run it again") from exc
            return None
        if version > 1:
            log.warning("%s: this creation overwrote version %d of a concurrent writer; merging its rows back",
                        table, version - 1)
            lost = lance.dataset(uri, version=version - 1).to_table()
            ds = lance.dataset(uri)
            ds.merge_insert(list(spec.keys)).when_not_matched_insert_all() \
                .conflict_retries(_CONFLICT_RETRIES).retry_timeout(_RETRY_TIMEOUT).execute(lost)
            version = ds.version
        return version

    def _merge(self, table: str, spec: schemas.TableSpec, data: pa.Table | pa.RecordBatchReader,
               delete_where: str | None) -> int:
        uri = self.table_uri(table)
        try:
            ds = lance.dataset(uri)
        except (OSError, ValueError):  # seen mid-creation: wait for the creator's lock
            with file_lock(self.local_root, f"table-{table}"):
                ds = lance.dataset(uri)
        if ds.schema != spec.schema and ds.schema.names != spec.schema.names:
            raise WarehouseError(
                f"table {table!r} on disk has columns {ds.schema.names}, the registry says "
                f"{spec.schema.names}; migrate or remove {uri}"
            )
        merge = ds.merge_insert(list(spec.keys)).when_matched_update_all().when_not_matched_insert_all()
        if delete_where is not None:
            merge = merge.when_not_matched_by_source_delete(delete_where)
        try:
            merge.conflict_retries(_CONFLICT_RETRIES).retry_timeout(_RETRY_TIMEOUT).execute(data)
        except (OSError, RuntimeError, ValueError) as exc:
            if is_commit_conflict(exc) and not _overwritten(exc):
                raise WarehouseError(
                    f"{table}: commit conflicts with concurrent writers persisted after {_CONFLICT_RETRIES} "
                    f"retries / {_RETRY_TIMEOUT.total_seconds():g} s; nothing was written ({exc})"
                ) from exc
            raise
        return ds.version  # merge_insert moves the handle to the version it committed

    def delete(self, table: str, where: str) -> int:
        """Delete the rows matching ``where``; returns the new version (a no-op on a missing table)."""
        if not self.exists(table):
            return 0
        ds = self.dataset(table)
        ds.delete(where)
        return lance.dataset(self.table_uri(table)).version
