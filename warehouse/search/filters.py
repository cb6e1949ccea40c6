"""The ``where`` of a search: a SQL predicate over the galaxy features, evaluated by DuckDB to allowed ids."""

from __future__ import annotations

import pyarrow as pa

from warehouse.search.features import features_query
from warehouse.sql_engine import SQLEngine
from warehouse.store import TableStore

__all__ = ["allowed_id_array", "allowed_ids"]


def allowed_ids(wh: TableStore, where: str, engine: SQLEngine | None = None,
                timeout_s: float | None = None) -> list[str]:
    """The galaxy ids whose features satisfy the SQL predicate ``where`` (read-only DuckDB).

    ``where`` is bound as one SQL expression over :func:`features_query`'s rows
    (:meth:`warehouse.sql_engine.SQLEngine.select_where`), never pasted into the query text; it is
    interrupted after ``timeout_s`` (default: the engine's :class:`~warehouse.sql_engine.SQLLimits`).

    Raises
    ------
    warehouse.SQLError
        ``where`` is not one expression, or a bad one (one line naming the problem and the tables).
    """
    return allowed_id_array(wh, where, engine, timeout_s).to_pylist()


def allowed_id_array(wh: TableStore, where: str, engine: SQLEngine | None = None,
                     timeout_s: float | None = None) -> pa.Array:
    """:func:`allowed_ids` as an Arrow string array (no Python list: a million ids stay in Arrow)."""
    engine = engine or SQLEngine(wh)
    rows = engine.select_where(features_query(engine), where, columns=["galaxy_id"], timeout_s=timeout_s)
    return rows.column("galaxy_id").combine_chunks()
