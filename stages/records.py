"""What the warehouse holds about one galaxy, and what tables it has: for ``astrovision show`` / ``tables``
and the HTTP service alike.

Pass a :class:`warehouse.Snapshot` (or a :meth:`warehouse.Warehouse.pinned` warehouse) to read every
table at one version (a consistent record while a run writes, or a past one: time travel). A galaxy's
rows are fetched by key (the snapshot's id -> row maps and a Lance ``take``), never by a filtered scan.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from typing import Any

import pyarrow as pa

from features.flags import decode
from warehouse import Warehouse, WarehouseError, quote, registered, schemas, snapshot_of
from warehouse.schemas.embeddings import TABLE_PREFIX

__all__ = [
    "FIRST_TABLES",
    "LAST_TABLES",
    "SKIPPED_TABLES",
    "decoded_flags",
    "galaxy_record",
    "galaxy_rows",
    "model_classes",
    "record_order",
    "require_galaxy",
    "table_summary",
]

SKIPPED_TABLES = ("images", "sources")
"""Tables a galaxy's record leaves out: pixels (see its image instead) and the sources registry."""

FIRST_TABLES = ("galaxies", "morphometrics", "photometry", "predictions")
"""What a person reads first about a galaxy, in this order (the order of :func:`galaxy_record`)."""

LAST_TABLES = ("embedding_maps",)
"""Read last: the galaxy's coordinates in the PCA / UMAP maps."""


def record_order(tables: Iterable[str]) -> list[str]:
    """``tables`` in the order a galaxy's record shows them.

    :data:`FIRST_TABLES` first (catalogue row, morphometrics, photometry, predictions), then every other
    table by name, then the embedding tables (``embeddings_*``), then :data:`LAST_TABLES`.
    """
    def rank(name: str) -> tuple[int, int, str]:
        if name in FIRST_TABLES:
            return (0, FIRST_TABLES.index(name), name)
        if name in LAST_TABLES:
            return (3, LAST_TABLES.index(name), name)
        return (2 if name.startswith(TABLE_PREFIX) else 1, 0, name)

    return sorted(tables, key=rank)


def decoded_flags(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """The decoded flag names of each table's ``flags`` column (its first row), tables in record order.

    ``rows`` is :func:`galaxy_rows`' answer; tables without a ``flags`` column are left out.
    """
    return {t: decode(rows[t][0].get("flags")) for t in record_order(rows) if rows[t] and "flags" in rows[t][0]}


def table_summary(wh: Warehouse) -> list[dict[str, Any]]:
    """One row per existing table: ``table``, ``rows``, ``version`` (Lance) and the registry's ``description``."""
    specs = registered()
    rows = []
    for name in wh.tables():
        ds = wh.dataset(name)
        spec = specs.get(name) or specs.get(name.split("_")[0])
        rows.append({"table": name, "rows": ds.count_rows(), "version": ds.version,
                     "description": spec.description if spec else ""})
    return rows


def require_galaxy(wh: Warehouse, galaxy_id: str) -> None:
    """``WarehouseError`` naming the problem when ``galaxy_id`` is not in the ``galaxies`` table."""
    if not wh.exists("galaxies") or not wh.has_ids("galaxies", [galaxy_id]):
        raise WarehouseError(
            f"no galaxy {galaxy_id!r} in {wh.root} (try `astrovision sql \"SELECT galaxy_id FROM galaxies LIMIT 5\"`)"
        )


def galaxy_rows(wh: Warehouse, galaxy_id: str, *,
                full: Collection[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every row keyed by ``galaxy_id`` in every table (but :data:`SKIPPED_TABLES`), by table name.

    Tables come in :func:`record_order`: catalogue row, morphometrics, photometry and predictions first,
    the ``embedding_maps`` coordinates last. Provenance columns and binary values are left out; values are as stored (lists stay lists).

    Parameters
    ----------
    wh : Warehouse
        A snapshot (its caches are used) or a warehouse.
    galaxy_id : str
    full : collection of str, optional
        The tables read whole; every other table holding the galaxy gives only its ``flags`` (an empty
        row where it has none), which is what a record needs of it: taking one column of a Lance row
        costs a fraction of taking all of them (a 384-d vector, 50 photometry columns). None: all.

    Raises
    ------
    WarehouseError
        No such galaxy (:func:`require_galaxy`).
    """
    snap = snapshot_of(wh)
    require_galaxy(snap, galaxy_id)
    out: dict[str, list[dict[str, Any]]] = {}
    for table in record_order(snap.tables()):
        if table in SKIPPED_TABLES:
            continue
        keyed, shown = snap.session.memo(("record columns", table, snap.pins[table]),
                                         lambda t=table: _record_columns(snap.dataset(t).schema))
        if not keyed:
            continue
        columns = shown if full is None or table in full else [c for c in shown if c == "flags"]
        if columns:  # from the server's rows held in memory, else one Lance take
            rows = snap.rows_of(table, [galaxy_id], columns=columns, held=True).to_pylist()
        else:
            rows = [{} for _ in snap.row_map(table).rows(galaxy_id)]
        if rows:
            out[table] = [{k: v for k, v in row.items() if not isinstance(v, bytes)} for row in rows]
    return out


def _record_columns(schema: pa.Schema) -> tuple[bool, list[str]]:
    """Whether a table is keyed by ``galaxy_id``, and the columns a record shows of it.

    Every column but ``galaxy_id``, provenance and binary columns that cannot be null (a binary value is
    left out of a record, a null one shown as null: those columns are read, and their values dropped).
    """
    if "galaxy_id" not in schema.names:
        return False, []
    return True, [f.name for f in schema if f.name != "galaxy_id" and f.name not in schemas.PROVENANCE_COLUMNS
            and not ((pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)) and not f.nullable)]


def model_classes(wh: Warehouse) -> dict[tuple[str, int], list[str]]:
    """Class names per ``(model name, version)``, in the order of its ``probabilities`` (registry ``classes_json``)."""
    if not wh.exists("models"):
        return {}
    rows = wh.read("models", columns=["name", "version", "classes_json"]).to_pylist()
    return {(r["name"], int(r["version"])): [c["name"] for c in json.loads(r["classes_json"])] for r in rows}


def galaxy_record(wh: Warehouse, galaxy_id: str) -> dict[str, Any]:
    """One galaxy as a reader wants it: catalogue row, morphometrics, photometry, latest predictions.

    Returns
    -------
    dict
        ``galaxy_id``; ``catalogue`` (its ``galaxies`` row); ``morphometrics`` (one row per band);
        ``photometry`` (its row or None); ``predictions``: the newest gate-passing version of each model
        (the ``latest_predictions`` view) with ``classes`` and ``confidence`` (the largest probability)
        and any further stored columns of the prediction (e.g. a conformal set); ``embeddings``: the
        encoders holding a vector for it; ``flags``: the decoded flag names of each table's
        ``flags`` column (:func:`features.flags.decode`); ``versions``: the table versions read.

    Raises
    ------
    WarehouseError
        No such galaxy.
    """
    wh = snapshot_of(wh)
    rows = galaxy_rows(wh, galaxy_id, full=FIRST_TABLES)  # of the others: which hold it, and their flags
    embeddings = sorted(t.removeprefix(TABLE_PREFIX) for t in rows if t.startswith(TABLE_PREFIX))
    flags = decoded_flags(rows)
    predictions: list[dict[str, Any]] = []
    if "predictions" in rows:
        latest = wh.engine().query_arrow(
            f"SELECT * FROM latest_predictions WHERE galaxy_id = {quote(galaxy_id)} ORDER BY model_name",
            limit=None).to_pylist()
        classes = model_classes(wh)
        stored = {(r["model_name"], int(r["model_version"])): r for r in rows["predictions"]}
        for row in latest:
            key = (row["model_name"], int(row["model_version"]))
            extra = {k: v for k, v in stored.get(key, {}).items() if k not in row}
            predictions.append({**{k: v for k, v in row.items() if k != "galaxy_id"}, **extra,
                                "classes": classes.get(key, [])})
    return {
        "galaxy_id": galaxy_id,
        "catalogue": rows["galaxies"][0],
        "morphometrics": rows.get("morphometrics", []),
        "photometry": (rows.get("photometry") or [None])[0],
        "predictions": predictions,
        "embeddings": embeddings,
        "flags": flags,
        "versions": {t: wh.dataset(t).version for t in (*rows, "galaxies") if wh.exists(t)},
    }
