"""The read path's owner: one :class:`ReadSession` per server (or CLI command) holds every read cache.

A session wraps a :class:`warehouse.Warehouse` and hands out :class:`Snapshot` objects: a warehouse
pinned at one version of every table (one consistent view for a request), whose reads go through the
session's caches:

* opened Lance datasets, one warm handle per table and checked-out versions (an LRU), so a request
  opens nothing and ANN index caches survive across versions;
* the DuckDB engine with every table and view registered, per snapshot and thread (an LRU);
* the ``galaxy_id`` -> row position map of a table version, so a record, a neighbour list's features
  and an image are fetched with one Lance ``take`` instead of a filtered scan (an LRU bounded in bytes);
* in a server (``hold_features``), the columns a record shows of each table version, held as Arrow
  columns beside that map, so a record is an Arrow ``take`` in memory instead of a Lance ``take`` per
  table (~0.5 ms per column taken at 1M rows); a table whose columns would take over a quarter of the
  row-map bytes is not held (logged once) and its record rows are taken from Lance as before;
* the vector matrices of the embeddings tables (:mod:`warehouse.search.matrix`, an LRU bounded in
  bytes: a server alternating two encoders keeps both while they fit);
* the ``where`` -> row positions of a filtered search, keyed by the snapshot's versions (bounded in bytes).

The latest versions are looked up again only when they may have changed: on a local root, a ``stat``
of ``lance/`` and of each table's ``_versions`` folder per snapshot (no listing, no table opened); on
an object store, at most every ``refresh_s`` seconds. Every snapshot asked for meanwhile is the same
object. Snapshots naming
versions (time travel) come from a small LRU. Nothing here is module-level state: two sessions side by
side share nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import lance
import pyarrow as pa

from warehouse.errors import WarehouseError
from warehouse.facade import Warehouse
from warehouse.sql_engine import SQLEngine, SQLLimits, SQLResult, Watchdog

__all__ = ["ByteLRU", "ReadSession", "RowMap", "Snapshot", "snapshot_of"]

log = logging.getLogger(__name__)

_V = TypeVar("_V")

DEFAULT_MATRIX_BYTES = 2 * 2**30
"""Vector matrices a session keeps (1M x 384 float32 is 1.5 GiB)."""
DEFAULT_ROWMAP_BYTES = 512 * 2**20
"""id -> row maps a session keeps (about 120 bytes per row)."""
DEFAULT_FILTER_BYTES = 256 * 2**20
"""``where`` -> row positions a session keeps (8 bytes per allowed row)."""
_HELD_SAMPLE_ROWS = 256
"""Rows read to estimate the bytes of a table's held columns before reading them all."""
_MTIME_GRANULARITY_NS = 50_000_000
"""A folder modified this close to the last look-up may hide a later change at the same time stamp: look again."""


class ByteLRU(Generic[_V]):
    """A thread-safe LRU mapping bounded by the bytes its values hold (``nbytes`` given on ``put``)."""

    def __init__(self, max_bytes: int, max_items: int = 1024) -> None:
        self.max_bytes = int(max_bytes)
        self.max_items = int(max_items)
        self._items: OrderedDict[Hashable, tuple[_V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> _V | None:
        """The value, marked as recently used; None when absent."""
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            self._items.move_to_end(key)
            return hit[0]

    def put(self, key: Hashable, value: _V, nbytes: int) -> _V:
        """Keep ``value`` (the oldest values leave while over the limits; one value alone may exceed them)."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, int(nbytes))
            self._bytes += int(nbytes)
            while len(self._items) > 1 and (self._bytes > self.max_bytes or len(self._items) > self.max_items):
                _, (_, size) = self._items.popitem(last=False)
                self._bytes -= size
        return value

    def get_or_make(self, key: Hashable, make: Callable[[], tuple[_V, int]]) -> tuple[_V, bool]:
        """The cached value, or ``make()``'s (value, bytes) kept; and whether it was cached."""
        hit = self.get(key)
        if hit is not None:
            return hit, True
        value, nbytes = make()
        return self.put(key, value, nbytes), False

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)


class RowMap:
    """``galaxy_id`` -> row positions of one table version (a key may have several rows: per band, per model)."""

    def __init__(self, ids: Sequence[str]) -> None:
        first: dict[str, int] = {}
        multi: dict[str, list[int]] = {}
        for i, gid in enumerate(ids):
            j = first.setdefault(gid, i)
            if j != i:
                multi.setdefault(gid, [j]).append(i)
        self.first = first
        self.multi = multi
        self.nbytes = 120 * len(ids)

    def rows(self, galaxy_id: str) -> list[int]:
        """Every row of one id (empty when absent), in table order."""
        if galaxy_id in self.multi:
            return self.multi[galaxy_id]
        i = self.first.get(galaxy_id)
        return [] if i is None else [i]

    def __contains__(self, galaxy_id: object) -> bool:
        return galaxy_id in self.first


class ReadSession:
    """Owner of every read cache of one warehouse; hands out :class:`Snapshot` views (see the module doc).

    Parameters
    ----------
    warehouse : Warehouse
        The warehouse read (unpinned).
    limits : SQLLimits, optional
        What each DuckDB engine may use, the ``where`` filters' timeout included.
    refresh_s : float
        On an object-store root, latest versions are looked up at most this often (0: every
        :meth:`snapshot`); a local root is checked with ``stat`` calls on every :meth:`snapshot`.
    matrix_bytes, rowmap_bytes, filter_bytes : int
        Byte bounds of the vector-matrix, row-map and ``where`` caches.
    hold_features : bool
        Evaluate the ``galaxy_features`` view once per version of its tables and keep it (within half of
        ``rowmap_bytes``), so the neighbours' features are an Arrow ``take``: worth it for a server, not
        for one CLI command (:func:`warehouse.search.features.features_by_id`). Also hold the columns a
        record reads of each table (:meth:`held_columns`, each within a quarter of ``rowmap_bytes``).
    """

    def __init__(self, warehouse: Warehouse, *, limits: SQLLimits | None = None, refresh_s: float = 0.25,
                 matrix_bytes: int = DEFAULT_MATRIX_BYTES, rowmap_bytes: int = DEFAULT_ROWMAP_BYTES,
                 filter_bytes: int = DEFAULT_FILTER_BYTES, hold_features: bool = False) -> None:
        self.base = Warehouse(warehouse.root, local_root=warehouse.local_root)
        self.limits = limits or SQLLimits()
        self.refresh_s = float(refresh_s)
        self.hold_features = bool(hold_features)
        """Hold each snapshot's whole ``galaxy_features`` in memory (a server: lookups become Arrow takes)."""
        self.matrices: ByteLRU[Any] = ByteLRU(matrix_bytes, max_items=16)
        """Embeddings table -> :class:`warehouse.search.matrix.Matrix` (filled by the search)."""
        self.filters: ByteLRU[Any] = ByteLRU(filter_bytes, max_items=256)
        """``(versions, table, where)`` -> allowed row positions (filled by the search)."""
        self.rowmaps: ByteLRU[Any] = ByteLRU(rowmap_bytes, max_items=64)
        """Row maps (:class:`RowMap`), held ``galaxy_features`` and held record columns, by table version."""
        self._datasets: ByteLRU[lance.LanceDataset] = ByteLRU(2**62, max_items=128)
        # an engine per (versions, pool thread) and, in a server, a /sql cursor per thread as well: room for
        # both for the 40 threads of FastAPI's pool (a miss rebuilds an engine: tens of ms)
        self._engines: ByteLRU[SQLEngine] = ByteLRU(2**62, max_items=96)
        self._snapshots: ByteLRU[Snapshot] = ByteLRU(2**62, max_items=16)
        self._memo: ByteLRU[Any] = ByteLRU(2**62, max_items=256)
        self._warm: dict[str, lance.LanceDataset] = {}
        self._latest: dict[str, int] | None = None
        self._checked = 0.0
        self._checked_ns = 0
        self._stamped: tuple[int, ...] | None = None
        self._stat_paths: tuple[tuple[str, ...], list[str]] | None = None
        self._lock = threading.Lock()
        self._hold_lock = threading.Lock()
        self.watchdog = Watchdog()
        """Interrupts the session's queries past their timeout (one thread, not a timer thread per query)."""

    def __repr__(self) -> str:
        return f"ReadSession({str(self.base.root)!r})"

    # ------------------------------------------------------------------------------------ versions
    def _stamp(self) -> tuple[int, ...] | None:
        """Modification times of ``lance/`` and of each known table's ``_versions`` (a local root; None remote).

        A commit adds a file to ``_versions`` and a new table a folder to ``lance/``, so an unchanged
        stamp means unchanged versions: a dozen ``stat`` calls instead of opening every table.
        """
        if self.base.location.remote:
            return None
        tables = tuple(self._latest or ())
        if self._stat_paths is None or self._stat_paths[0] != tables:  # the paths as text, made once
            lance_dir = Path(self.base.lance_dir)
            self._stat_paths = (tables, [str(lance_dir), *(str(lance_dir / f"{t}.lance" / "_versions")
                                                           for t in tables)])
        try:
            return tuple(os.stat(path).st_mtime_ns for path in self._stat_paths[1])
        except OSError:
            return None

    def latest(self) -> dict[str, int]:
        """The latest version of every table.

        On a local root, looked up again only when a ``stat`` of the table folders shows a change (a
        change within the file system's timestamp granularity of the last look-up counts as one); on
        an object store, at most every ``refresh_s`` seconds.
        """
        with self._lock:
            stamp = self._stamp()
            if self._latest is not None:
                if stamp is None and time.monotonic() - self._checked < self.refresh_s:
                    return dict(self._latest)
                if (stamp is not None and stamp == self._stamped
                        and max(stamp) < self._checked_ns - _MTIME_GRANULARITY_NS):
                    return dict(self._latest)
            checked_ns = time.time_ns()
            found = {}
            for table in self.base.tables():
                ds = self._warm.get(table)
                if ds is None:
                    ds = self._warm[table] = self.base.dataset(table)
                else:
                    latest = ds.latest_version
                    if latest != ds.version:
                        ds = self._warm[table] = ds.checkout_version(latest)
                found[table] = int(ds.version)
                self._datasets.put((table, found[table]), ds, 0)
            self._latest, self._checked, self._checked_ns = found, time.monotonic(), checked_ns
            self._stamped = self._stamp()
            return dict(found)

    def dataset(self, table: str, version: int) -> lance.LanceDataset:
        """A table at one version, checked out from the table's warm handle (shares its index caches)."""
        ds = self._datasets.get((table, version))
        if ds is not None:
            return ds
        warm = self._warm.get(table)
        try:
            ds = warm.checkout_version(version) if warm is not None else self.base.dataset(table, version)
        except (ValueError, OSError) as exc:
            raise WarehouseError(f"table {table!r} has no version {version}: {exc}") from exc
        if warm is None:
            self._warm[table] = ds
        return self._datasets.put((table, version), ds, 0)

    def snapshot(self, versions: Mapping[str, int] | None = None) -> Snapshot:
        """The warehouse at the latest versions, with ``versions`` (table -> version) pinned over them.

        Raises
        ------
        WarehouseError
            A named table does not exist, or has no such version.
        """
        latest = self.latest()
        pins = dict(latest)
        for table, version in (versions or {}).items():
            if not 0 <= int(version) < 2**64:  # Lance versions are u64: outside, its binding raises OverflowError
                raise WarehouseError(f"table {table!r} has no version {version} (versions are 1, 2, ...)")
            if table not in latest:
                self.base.dataset(table)  # the one-line "does not exist (tables: ...)" error
            pins[table] = int(version)
        key = tuple(sorted(pins.items()))
        snap = self._snapshots.get(key)
        if snap is not None:
            return snap
        for table, version in (versions or {}).items():
            try:
                self.dataset(table, int(version))
            except WarehouseError:
                raise WarehouseError(f"table {table!r} has no version {version} (latest: {latest[table]}; "
                                     "old versions may have been vacuumed)") from None
        return self._snapshots.put(key, Snapshot(self, pins), 0)

    # ------------------------------------------------------------------------------------ caches
    def engine(self, snap: Snapshot) -> SQLEngine:
        """The DuckDB engine over a snapshot's versions, for the calling thread (a connection runs one query)."""
        key = (tuple(sorted(snap.pins.items())), threading.get_ident())
        return self.cached_engine(key, lambda: SQLEngine(snap, snap.pins, self.limits))

    def cached_engine(self, key: Hashable, make: Callable[[], SQLEngine]) -> SQLEngine:
        """An engine kept under ``key`` (an LRU of 96), made by ``make`` on a miss (timed by the session's watchdog)."""
        def made() -> tuple[SQLEngine, int]:
            engine = make()
            engine.watchdog = engine.watchdog or self.watchdog
            return engine, 0

        return self._engines.get_or_make(key, made)[0]

    def row_map(self, table: str, ds: lance.LanceDataset) -> RowMap:
        """The id -> rows map of a table version (read once: its ``galaxy_id`` column)."""
        def make() -> tuple[RowMap, int]:
            m = RowMap(ds.to_table(columns=["galaxy_id"]).column("galaxy_id").to_pylist())
            return m, m.nbytes

        return self.rowmaps.get_or_make((table, int(ds.version)), make)[0]

    def held_columns(self, table: str, ds: lance.LanceDataset, columns: Sequence[str]) -> pa.Table | None:
        """``columns`` of a table version held in memory, in table order (rows as in the row map); None when
        the session does not hold rows (not ``hold_features``) or they would take over a quarter of the
        row-map bytes (then logged once per table version, and the caller takes from Lance).

        Read once per (table, version, columns) on first use, under one lock so that concurrent first
        requests read it once; the bytes are estimated from the first rows before the whole is read.
        """
        if not self.hold_features:
            return None
        key = ("held", table, int(ds.version), tuple(columns))
        hit = self.rowmaps.get(key)
        if hit is not None or self._memo.get(key) is not None:  # held, or known to be over the bound
            return hit
        with self._hold_lock:
            hit = self.rowmaps.get(key)
            if hit is not None or self._memo.get(key) is not None:
                return hit
            bound = self.rowmaps.max_bytes // 4
            n = ds.count_rows()
            sample = ds.head(min(n, _HELD_SAMPLE_ROWS), columns=list(columns)) if n else None
            estimate = 0 if sample is None or not sample.num_rows else sample.nbytes * n // sample.num_rows
            held = None if estimate > bound else ds.to_table(columns=list(columns)).combine_chunks()
            if held is None or held.nbytes > bound:
                log.warning("%s v%d: its %d record column(s) (~%d MiB) are over a quarter of the row-map bound "
                            "(%d MiB); its records are taken from Lance", table, ds.version, len(columns),
                            max(estimate, held.nbytes if held is not None else 0) // 2**20,
                            self.rowmaps.max_bytes // 2**20)
                self._memo.put(key, "over the bound", 0)
                return None
            return self.rowmaps.put(key, held, held.nbytes)

    def memo(self, key: Hashable, make: Callable[[], _V]) -> _V:
        """A small value derived from a table version (name the version in ``key``), made once (an LRU of 256)."""
        return self._memo.get_or_make(key, lambda: (make(), 0))[0]

    def nbytes(self) -> dict[str, int]:
        """Bytes held by each bounded cache."""
        return {"matrices": self.matrices.nbytes, "rowmaps": self.rowmaps.nbytes, "filters": self.filters.nbytes}


class Snapshot(Warehouse):
    """A warehouse pinned at one version of every table, reading through its :class:`ReadSession`'s caches.

    Everything a :class:`warehouse.Warehouse` reads works on it (it is one); ``take``, ``has_ids`` and
    ``rows_of`` use the session's row maps, ``sql`` its engine, the search its matrices and filters.
    """

    def __init__(self, session: ReadSession, pins: Mapping[str, int]) -> None:
        base = session.base
        super().__init__(base.root, local_root=base.local_root)
        self._fs = base._fs
        self._pins = dict(pins)
        self.session = session

    def __repr__(self) -> str:
        return f"Snapshot({str(self.root)!r}, {self._pins})"

    def tables(self) -> list[str]:
        """The tables of the snapshot."""
        return sorted(self._pins)

    def exists(self, table: str) -> bool:
        """Whether the table existed when the snapshot was taken."""
        self.table_uri(table)  # checks the name
        return table in self._pins

    def versions(self) -> dict[str, int]:
        """The snapshot's versions."""
        return dict(self._pins)

    def dataset(self, table: str, version: int | None = None) -> lance.LanceDataset:
        """A table at the snapshot's version (or at ``version``), from the session's opened datasets."""
        if version is None:
            if table not in self._pins:
                raise WarehouseError(f"table {table!r} does not exist in {self.root} "
                                     f"(tables: {', '.join(self.tables()) or 'none'})")
            version = self._pins[table]
        return self.session.dataset(table, int(version))

    def pinned(self, versions: Mapping[str, int] | None = None) -> Snapshot:
        """The session's snapshot with ``versions`` pinned over the latest ones."""
        return self.session.snapshot(versions)

    def engine(self) -> SQLEngine:
        """The session's DuckDB engine over this snapshot (this thread's)."""
        return self.session.engine(self)

    def sql_result(self, query: str, *, limit: int | None = 10_000, timeout_s: float | None = None) -> SQLResult:
        """:meth:`warehouse.Warehouse.sql_result` on the session's engine (timeout: the session's limits)."""
        return self.engine().run(query, limit=limit, timeout_s=timeout_s)

    def row_map(self, table: str) -> RowMap:
        """The id -> rows map of a table at the snapshot's version."""
        return self.session.row_map(table, self.dataset(table))

    def has_ids(self, table: str, galaxy_ids: Sequence[str]) -> list[str]:
        """The ids among ``galaxy_ids`` that have a row in ``table`` (in the given order)."""
        if table not in self._pins:
            return []
        rows = self.row_map(table)
        return [g for g in galaxy_ids if g in rows]

    def take(self, table: str, galaxy_ids: Sequence[str], columns: list[str] | None = None) -> pa.Table:
        """Rows of a ``galaxy_id``-keyed table for the given ids, in that order (one Lance ``take``)."""
        rows = self.row_map(table)
        missing = [g for g in galaxy_ids if g not in rows]
        if missing:
            raise WarehouseError(f"{len(missing)} galaxy id(s) not in {table!r}, e.g. {missing[:3]}")
        return self.dataset(table).take([rows.first[g] for g in galaxy_ids], columns=columns)

    def rows_of(self, table: str, galaxy_ids: Sequence[str], columns: list[str] | None = None, *,
                held: bool = False) -> pa.Table:
        """Every row of the given ids (several per id where the key has more columns), ids in the given order.

        ``held``: from the session's in-memory copy of ``columns`` (:meth:`ReadSession.held_columns`),
        made on first use, when the session holds rows and they fit; else one Lance ``take`` (the same rows).
        """
        rows = self.row_map(table)
        at = [i for g in galaxy_ids for i in rows.rows(g)]
        ds = self.dataset(table)
        if held and columns is not None:
            copy = self.session.held_columns(table, ds, columns)
            if copy is not None:
                return copy.take(pa.array(at, pa.int64()))
        return ds.take(at, columns=columns)


def snapshot_of(wh: Warehouse, limits: SQLLimits | None = None) -> Snapshot:
    """``wh`` itself when it is a :class:`Snapshot`; else a snapshot of a new session over it (its pins kept).

    A plain warehouse gets caches that live for the one call: pass a snapshot to keep them.
    """
    if isinstance(wh, Snapshot):
        return wh
    return ReadSession(wh, limits=limits, refresh_s=0).snapshot(wh.pins or None)
