"""The galaxy features of a search: the rows ``where`` filters, and the neighbours' rows fetched by key.

Lookups by key: rows of given galaxy ids fetched with one Lance ``take`` per table, never a scan.

:func:`features_by_id` answers what ``SELECT * FROM galaxy_features WHERE galaxy_id IN (...)`` answers
(same columns, same values): the view's own SQL runs in a DuckDB connection where ``galaxies``,
``morphometrics`` and ``photometry`` are registered as just the taken rows of the ids, so the view stays
the one definition of the features and no query scans a million rows. One such connection per
snapshot and thread is kept by the snapshot's :class:`warehouse.session.ReadSession`. In a session
that holds features (a server), while the whole view of a snapshot fits in half the session's row-map
bytes, it is evaluated once per version of its tables and held in memory instead, and a lookup is an Arrow ``take`` by the id -> row map.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from warehouse import schemas
from warehouse.session import Snapshot
from warehouse.sql_engine import SQLEngine
from warehouse.sqltext import ident

__all__ = ["FEATURE_TABLES", "KEYED_TABLES", "features_by_id", "features_query", "raised_limit", "serving_engine"]

FEATURE_TABLES = ("morphometrics", "photometry")
"""Tables joined to ``galaxies`` when no ``galaxy_features`` view is defined."""
_PROVENANCE = frozenset(schemas.PROVENANCE_COLUMNS)

KEYED_TABLES = ("galaxies", "morphometrics", "photometry")
"""The tables the feature rows are made of (the ``galaxy_features`` view reads them; so does the fallback query)."""


def features_query(engine: SQLEngine) -> str:
    """The SELECT whose rows are the galaxy features ``where`` may refer to.

    The ``galaxy_features`` view when the SQL files define one; else ``galaxies`` (its own columns)
    LEFT JOINed with each of ``morphometrics`` and ``photometry`` that is keyed by ``galaxy_id`` alone,
    their columns prefixed with the table name where a name is already taken (``photometry_flags``).
    """
    if "galaxy_features" in engine.views:
        return "SELECT * FROM galaxy_features"
    gal = schemas.get("galaxies")
    taken = set(gal.columns.names)
    select = [f"g.{ident(c)}" for c in gal.columns.names]
    joins = []
    for i, name in enumerate(FEATURE_TABLES):
        if name not in engine.relations:
            continue
        spec = schemas.registered().get(name)
        if spec is None or tuple(spec.keys) != ("galaxy_id",):
            continue
        alias = f"t{i}"
        for col in spec.columns.names:
            if col == "galaxy_id" or col in _PROVENANCE:
                continue
            out = col if col not in taken else f"{name}_{col}"
            taken.add(out)
            select.append(f"{alias}.{ident(col)} AS {ident(out)}")
        joins.append(f"LEFT JOIN {name} {alias} ON {alias}.galaxy_id = g.galaxy_id")
    return f"SELECT {', '.join(select)} FROM galaxies g {' '.join(joins)}"


def _keyed_engine(snap: Snapshot) -> SQLEngine:
    key = ("keyed", tuple(sorted(snap.pins.items())), threading.get_ident())
    return snap.session.cached_engine(key, lambda: SQLEngine(snap, snap.pins, snap.session.limits))


def _materialised(snap: Snapshot) -> tuple[pa.Table, dict[str, int]] | None:
    """Every galaxy's feature row of the snapshot's versions, in memory with its id -> row map (or None when
    over the session's byte bound: then each lookup runs the view over the taken rows)."""
    key = ("features", *((t, snap.pins.get(t)) for t in KEYED_TABLES))
    cache = snap.session.rowmaps
    if not snap.session.hold_features:
        return None
    hit = cache.get(key)
    if hit is None:
        if cache.get(("too big", *key[1:])) is not None:
            return None
        engine = snap.engine()
        # the answer's byte cap is for users: this read is the code's own (~0.5 GiB at 1M galaxies)
        table = engine.run(features_query(engine), limit=None, capped=False).table.combine_chunks()
        if table.nbytes > cache.max_bytes // 2:
            cache.put(("too big", *key[1:]), True, 0)
            return None
        rows = {g: i for i, g in enumerate(table.column("galaxy_id").to_pylist())}
        hit = cache.put(key, (table, rows), table.nbytes + 120 * len(rows))
    return hit


def serving_engine(snap: Snapshot) -> SQLEngine:
    """The engine ``POST /sql`` runs on: in a session that holds features, ``galaxy_features`` is a table.

    In a session that holds features (a server), the snapshot's held rows of the view are copied once
    per version of the tables into a DuckDB table with an index on ``galaxy_id`` (an ART), in one
    database per snapshot; each thread queries it through its own cursor (:class:`SQLEngine`
    ``parent``), the other tables and views as in any engine. A point query by id is then an index
    lookup (a registered Arrow table or the view over Lance is a scan of every row: ~150 ms at 1M
    rows). Other sessions, or features too big to hold: :meth:`Snapshot.engine` as it is.
    """
    engine = snap.engine()
    if not snap.session.hold_features or "galaxy_features" not in engine.views:
        return engine
    pins = tuple(sorted(snap.pins.items()))
    base = snap.session.cached_engine(("serving", pins), lambda: _serving_database(snap))
    if not getattr(base, "serves_held_features", False):
        return engine

    def cursor() -> SQLEngine:
        engine = SQLEngine(snap, snap.pins, parent=base)
        engine.serves_held_features = True  # type: ignore[attr-defined]
        return engine

    return snap.session.cached_engine(("serving", pins, threading.get_ident()), cursor)


_SIZE = re.compile(r"([\d.]+)\s*(bytes|KiB|MiB|GiB|TiB)")
"""DuckDB's way of showing a size (``current_setting('memory_limit')``: ``953.6 MiB``)."""
_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")


def raised_limit(shown: str, extra: int) -> int | None:
    """DuckDB's ``memory_limit`` as it shows it (``953.6 MiB``) plus ``extra`` bytes; None if not a size."""
    limit = _SIZE.fullmatch(shown.strip())
    if limit is None:
        return None
    return int(float(limit.group(1)) * 1024 ** _UNITS.index(limit.group(2))) + int(extra)


def _serving_database(snap: Snapshot) -> SQLEngine:
    """The DuckDB database whose ``galaxy_features`` is the held rows as a table indexed by ``galaxy_id``.

    Its ``memory_limit`` is the session's plus twice the table's Arrow bytes, so the held table does
    not take the queries' share.
    """
    held = _materialised(snap)

    def prepare(engine: SQLEngine) -> None:
        if held is None:
            return
        con = engine.con
        total = raised_limit(str(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]),
                             2 * held[0].nbytes)
        if total is not None:
            con.execute(f"SET memory_limit = '{total}B'")
        con.register("held_features", held[0])
        con.execute("DROP VIEW galaxy_features")
        con.execute("CREATE TABLE galaxy_features AS SELECT * FROM held_features")
        con.unregister("held_features")
        con.execute("CREATE INDEX galaxy_features_id ON galaxy_features (galaxy_id)")
        engine.serves_held_features = True  # type: ignore[attr-defined]

    return SQLEngine(snap, snap.pins, snap.session.limits, prepare=prepare)


def features_by_id(snap: Snapshot, galaxy_ids: Sequence[str]) -> pa.Table:
    """The galaxy feature rows of ``galaxy_ids``, in their order (ids without a ``galaxies`` row are left out).

    The columns are those of :func:`features_query` (the ``galaxy_features`` view when defined). Served
    from the snapshot's features held in memory (the view evaluated once per version of its tables,
    bounded by the session's row-map bytes), else by the view over the ids' taken rows.
    """
    held = _materialised(snap)
    if held is not None:
        table, rows = held
        return table.take(pa.array([rows[g] for g in galaxy_ids if g in rows], pa.int64()))
    engine = _keyed_engine(snap)
    for table in KEYED_TABLES:
        if table in snap.pins:
            engine.con.register(table, snap.rows_of(table, galaxy_ids))
    rows = engine.query_arrow(features_query(engine), limit=None)
    at = pc.index_in(pa.array(list(galaxy_ids), pa.string()), value_set=rows.column("galaxy_id"))
    return rows.take(pc.drop_null(at))
