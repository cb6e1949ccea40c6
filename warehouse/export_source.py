"""The rows of a table, a view or a read-only query, streamed in Arrow record batches for an export.

The query runs on a :class:`warehouse.sql_engine.SQLEngine` (the same sandbox as ``astrovision sql``:
DuckDB's parser decides it is one ``SELECT``, no file or network access, configuration locked) and is
read with DuckDB's Arrow record-batch reader, so a million-row export never holds more than one batch
(plus DuckDB's own working memory, under its ``memory_limit``). Results are made portable
(:func:`warehouse.sql_engine.portable_projection`) as for every other face.

:meth:`ExportSource.profile` runs one aggregate over the same query before the rows are read: the row
count (for the progress bar) and, per column, what a fixed-width format must know in advance (the
longest string in bytes, the shortest and longest list, whether integers hold NULLs and their range).
No timeout applies: an export is the user's own process (Ctrl-C stops it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from warehouse.errors import SQLError, WarehouseError
from warehouse.sql_engine import SQLEngine, portable_projection
from warehouse.sqltext import ident

__all__ = ["ColumnProfile", "ExportSource", "open_export"]

LIST_SEPARATOR = ";"
"""Joins the items of a list of strings where a format holds one string per cell (FITS, VOTable)."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@dataclass(frozen=True)
class ColumnProfile:
    """What one aggregate pass over the rows found in one column (``None`` where it does not apply).

    Attributes
    ----------
    max_bytes : int or None
        Longest string in UTF-8 bytes (for a list of strings: its items joined by ``;``).
    ascii : bool
        Every string is ASCII.
    min_len, max_len : int or None
        Shortest and longest list.
    nulls : int
        NULL cells (counted for string, list and integer columns only).
    min_value, max_value : int or None
        Range of an integer column.
    """

    max_bytes: int | None = None
    ascii: bool = True
    min_len: int | None = None
    max_len: int | None = None
    nulls: int = 0
    min_value: int | None = None
    max_value: int | None = None


@dataclass
class ExportSource:
    """A checked read-only relation ready to be profiled and streamed.

    Attributes
    ----------
    name : str
        The table or view name, or ``"query"``.
    schema : pyarrow.Schema
        The schema of every batch :meth:`batches` yields.
    relations : tuple of str
        The tables and views the rows come from (a query's, views first, as DuckDB's parser names
        them), so a result column can be documented by name.
    """

    name: str
    schema: pa.Schema
    relations: tuple[str, ...]
    _relation: duckdb.DuckDBPyRelation = field(repr=False)

    def profile(self) -> tuple[int, dict[str, ColumnProfile]]:
        """Row count and a :class:`ColumnProfile` per string, list and integer column, from one aggregate.

        Only those columns are read (DuckDB pushes the projection down to Lance): floats, booleans,
        timestamps and fixed-size lists (embeddings) need nothing from this pass.

        Raises
        ------
        SQLError
            The query failed while running.
        """
        exprs: list[str] = ["count(*)"]
        slots: list[tuple[str, str, int]] = []  # (column, kind, number of expressions)
        for f in self.schema:
            col = ident(f.name)
            t = f.type
            if pa.types.is_string(t) or pa.types.is_large_string(t):
                exprs += [f"max(strlen({col}))", f"max(strlen({col}) - length({col}))", f"count({col})"]
                slots.append((f.name, "str", 3))
            elif _is_list(t) and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)):
                joined = f"array_to_string({col}, '{LIST_SEPARATOR}')"
                exprs += [f"max(strlen({joined}))", f"max(strlen({joined}) - length({joined}))", f"count({col})"]
                slots.append((f.name, "str", 3))
            elif pa.types.is_fixed_size_list(t):
                continue  # length known from the type; not read here (an embeddings column is most of a table)
            elif _is_list(t):
                exprs += [f"min(len({col}))", f"max(len({col}))", f"count({col})"]
                slots.append((f.name, "list", 3))
            elif pa.types.is_integer(t):
                exprs += [f"min({col})::HUGEINT::VARCHAR", f"max({col})::HUGEINT::VARCHAR", f"count({col})"]
                slots.append((f.name, "int", 3))
            # other columns (floats, booleans, timestamps, binary) need nothing from this pass: not read
        try:
            rows = self._relation.aggregate(", ".join(exprs)).fetchall()
        except duckdb.Error as exc:
            raise SQLError(_one_line(exc)) from exc
        row = rows[0]
        total, pos, out = int(row[0]), 1, {}
        for name, kind, n in slots:
            vals = row[pos:pos + n]
            pos += n
            nulls = total - int(vals[-1])
            if kind == "str":
                out[name] = ColumnProfile(max_bytes=int(vals[0] or 0), ascii=not (vals[1] or 0), nulls=nulls)
            elif kind == "list":
                out[name] = ColumnProfile(min_len=_opt_int(vals[0]), max_len=_opt_int(vals[1]), nulls=nulls)
            else:
                out[name] = ColumnProfile(min_value=_opt_int(vals[0]), max_value=_opt_int(vals[1]), nulls=nulls)
        return total, out

    def batches(self, rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        """The rows in record batches of at most ``rows`` rows (DuckDB's streaming Arrow reader).

        Raises
        ------
        SQLError
            The query failed while its rows were read (one line).
        """
        try:
            reader = self._relation.to_arrow_reader(int(rows))
            yield from reader
        except (duckdb.Error, pa.ArrowException) as exc:
            raise SQLError(_one_line(exc)) from exc


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _opt_int(value: object) -> int | None:
    return None if value is None else int(str(value))


def open_export(engine: SQLEngine, *, table: str | None = None, sql: str | None = None) -> ExportSource:
    """The rows of ``table`` (a table or view the engine knows) or of the read-only query ``sql``.

    Parameters
    ----------
    engine : SQLEngine
        Every warehouse table and view registered (see :class:`warehouse.sql_engine.SQLEngine`).
    table : str, optional
        A table or view name.
    sql : str, optional
        One read-only ``SELECT`` (checked by :meth:`SQLEngine.check`); exactly one of the two.

    Raises
    ------
    WarehouseError
        An unknown table or view (the message lists those that exist).
    SQLError
        A query that is not one read-only ``SELECT`` or that DuckDB cannot bind.
    """
    if (table is None) == (sql is None):
        raise WarehouseError("give either a table or view name or an SQL query, not both")
    if table is not None:
        if table not in engine.relations and table not in engine.views:
            raise WarehouseError(f"unknown table or view {table!r} ({engine.describe()})")
        query, name = f"SELECT * FROM {ident(table)}", table
    else:
        query, name = str(sql), "query"
    stmt = engine.check(query)
    if stmt.type != duckdb.StatementType.SELECT:
        raise SQLError(f"only a SELECT query can be exported, not {stmt.type.name}")
    try:
        rel = engine.con.sql(stmt.query)
        if rel is None:
            raise SQLError("the query returns no rows to export")
        exprs = portable_projection(rel.columns, rel.types)
        if exprs is not None:
            rel = rel.project(", ".join(exprs))
        schema = rel.limit(0).to_arrow_table().schema
    except duckdb.Error as exc:
        raise SQLError(f"{_one_line(exc)} ({engine.describe()})") from exc
    return ExportSource(name=name, schema=schema, relations=(table,) if table is not None else _relations_of(engine, stmt.query),
                        _relation=rel)


def _relations_of(engine: SQLEngine, query: str) -> tuple[str, ...]:
    """The tables and views ``query`` reads, from DuckDB's parse tree (``json_serialize_sql``), views first."""
    try:
        tree = json.loads(engine.con.execute("SELECT json_serialize_sql(?)", [query]).fetchall()[0][0])
    except (duckdb.Error, ValueError, IndexError):
        return ()
    names: set[str] = set()
    stack: list[object] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "BASE_TABLE" and isinstance(node.get("table_name"), str):
                names.add(node["table_name"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return tuple([v for v in engine.views if v in names] + [t for t in engine.relations if t in names])
