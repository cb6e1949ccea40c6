"""Rows on their way into a table: validated against the table's schema, provenance stamped, keys unique.

Used by :meth:`warehouse.store.TableStore.upsert` and ``replace``; nothing is written when any row is bad.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from warehouse import schemas
from warehouse.errors import WarehouseError
from warehouse.provenance import code_version, utc_now

if TYPE_CHECKING:  # polars is imported by whoever passes a DataFrame (a CLI command reading needs none)
    from typing import TypeAlias

    import polars as pl

    RowsLike: TypeAlias = pa.Table | pa.RecordBatchReader | pl.DataFrame | Sequence[dict[str, Any]]
    """What a write accepts."""

__all__ = ["cast_rows", "check_unique_keys", "to_table", "validated_stream"]


def cast_rows(spec: schemas.TableSpec, rows: pa.Table | pa.RecordBatch, run_id: str) -> pa.Table:
    """Validate one chunk of rows against the spec and stamp provenance."""
    missing = [n for n in spec.columns.names if n not in rows.schema.names]
    extra = [n for n in rows.schema.names if n not in spec.schema.names]
    if missing or extra:
        raise WarehouseError(
            f"rows for {spec.name!r} do not match its schema: missing {missing}, unexpected {extra}"
        )
    n = rows.num_rows
    stamped = {
        "code_version": pa.array([code_version()] * n, pa.string()),
        "run_id": pa.array([run_id] * n, pa.string()),
        "written_at": pa.array([utc_now()] * n, type=pa.timestamp("us", tz="UTC")),
    }
    arrays = []
    for f in spec.schema:
        col = stamped[f.name] if f.name in stamped else rows.column(f.name)
        try:
            col = col.cast(f.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise WarehouseError(f"{spec.name}.{f.name}: cannot store as {f.type}: {exc}") from exc
        if not f.nullable and col.null_count:
            raise WarehouseError(f"{spec.name}.{f.name}: {col.null_count} null value(s) in a required column")
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=spec.schema)


def to_table(spec: schemas.TableSpec, rows: RowsLike, run_id: str) -> pa.Table:
    """Rows of any accepted form as one validated, stamped Arrow table with unique keys."""
    if type(rows).__module__.startswith("polars"):  # a polars DataFrame
        rows = rows.to_arrow()
    if not isinstance(rows, pa.Table):
        rows = list(rows)
        rows = pa.Table.from_pylist(rows) if rows else spec.columns.empty_table()
    table = cast_rows(spec, rows, run_id)
    check_unique_keys(spec, table)
    return table


def validated_stream(spec: schemas.TableSpec, reader: pa.RecordBatchReader, run_id: str,
                     errors: list[WarehouseError]) -> pa.RecordBatchReader:
    """Validate a stream batch by batch; an error in any batch aborts the whole (uncommitted) write.

    The error is also appended to ``errors`` (Lance raises its own ``OSError`` around it).
    """
    seen: set[tuple] = set()

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            try:
                table = cast_rows(spec, batch, run_id)
                keys = zip(*(table.column(k).to_pylist() for k in spec.keys))
                for key in keys:
                    if key in seen:
                        raise WarehouseError(f"duplicate key {key} in rows for {spec.name!r}")
                    seen.add(key)
            except WarehouseError as exc:
                errors.append(exc)  # Lance wraps it in an OSError; the writer re-raises this one
                raise
            yield from table.to_batches()

    return pa.RecordBatchReader.from_batches(spec.schema, batches())


def check_unique_keys(spec: schemas.TableSpec, table: pa.Table) -> None:
    """``WarehouseError`` naming a few duplicated keys, if any."""
    if table.num_rows == 0:
        return
    keys = table.select(list(spec.keys))
    n_unique = keys.group_by(list(spec.keys)).aggregate([]).num_rows
    if n_unique != table.num_rows:
        counts = keys.group_by(list(spec.keys)).aggregate([([], "count_all")])
        dup = counts.filter(pc.greater(counts.column("count_all"), 1)).slice(0, 3).to_pylist()
        raise WarehouseError(
            f"duplicate keys {spec.keys} in rows for {spec.name!r}: "
            f"{table.num_rows - n_unique} duplicate row(s), e.g. {dup}"
        )
