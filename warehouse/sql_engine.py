"""Read-only SQL over the warehouse with DuckDB.

Each Lance table is registered in an in-memory DuckDB connection as an Arrow dataset (DuckDB scans it
directly, pushing projections and filters down; nothing is copied), registered tables that do not
exist yet appear as empty views with their declared schema, and the views in ``sql/*.sql`` are
created on top, in file-name order.

User queries are guarded: only ``SELECT`` statements (and ``WITH``/``DESCRIBE``/``SHOW``/``EXPLAIN``
reads), no file or network access (``enable_external_access = false``, configuration locked), a row
limit, and a timeout that interrupts the query.
"""

from __future__ import annotations

import re
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import polars as pl
import pyarrow as pa

from warehouse import schemas
from warehouse.errors import SQLError

if TYPE_CHECKING:
    from warehouse.store import Warehouse

__all__ = ["SQLEngine", "view_files"]

_ALLOWED = {
    duckdb.StatementType.SELECT,
    duckdb.StatementType.EXPLAIN,
}


def view_files() -> list[Path]:
    """The ``sql/*.sql`` view definitions shipped with the package, in load order."""
    root = resources.files("sql")
    return sorted((Path(str(p)) for p in root.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class SQLEngine:
    """An in-process DuckDB connection with every warehouse table and view registered."""

    def __init__(self, warehouse: Warehouse, version: dict[str, int] | None = None) -> None:
        self.warehouse = warehouse
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET threads TO 2")
        self.relations: list[str] = []
        self._register_tables(version or {})
        self._create_constants()
        self.views = self._create_views()
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")

    def _register_tables(self, version: dict[str, int]) -> None:
        existing = set(self.warehouse.tables())
        names = sorted(existing | set(schemas.registered()))
        for name in names:
            if name in existing:
                obj = self.warehouse.dataset(name, version.get(name))
            else:
                obj = pa.table({f.name: pa.array([], f.type) for f in schemas.get(name).schema})
            self.con.register(name, obj)
            self.relations.append(name)

    def _create_constants(self) -> None:
        """One macro without arguments per ``sql.constants()`` entry (values defined in Python, used by the views)."""
        import sql

        for name, value in sql.constants().items():
            if not name.isidentifier():
                raise SQLError(f"sql.constants(): {name!r} is not a valid macro name")
            self.con.execute(f"CREATE MACRO {name}() AS {int(value)}")

    def _create_views(self) -> list[str]:
        created = []
        for path in view_files():
            text = path.read_text()
            for stmt in self.con.extract_statements(text):
                if stmt.type != duckdb.StatementType.CREATE:
                    raise SQLError(f"{path.name}: only CREATE VIEW statements belong in sql/ files")
                try:
                    self.con.execute(stmt.query)
                except duckdb.Error as exc:
                    raise SQLError(f"{path.name}: view definition failed: {_one_line(exc)}") from exc
                match = re.search(r"VIEW\s+(\w+)", stmt.query, re.IGNORECASE)
                if match:
                    created.append(match.group(1))
        return created

    def describe(self) -> str:
        """One line naming the tables and views a query can use."""
        return f"tables: {', '.join(self.relations)}; views: {', '.join(self.views) or 'none'}"

    def query(self, query: str, *, limit: int | None = 10_000, timeout_s: float = 60.0) -> pl.DataFrame:
        """Run one read-only query and return a polars DataFrame.

        Parameters
        ----------
        query : str
            A single SELECT (or WITH ... SELECT) statement.
        limit : int or None
            At most this many rows come back (``None``: no limit).
        timeout_s : float
            The query is interrupted after this many seconds.

        Raises
        ------
        SQLError
            One line: what went wrong, plus the tables and views that exist.
        """
        return pl.from_arrow(self.query_arrow(query, limit=limit, timeout_s=timeout_s))  # type: ignore[return-value]

    def query_arrow(self, query: str, *, limit: int | None = 10_000, timeout_s: float = 60.0) -> pa.Table:
        """:meth:`query` returning an Arrow table."""
        try:
            statements = self.con.extract_statements(query)
        except duckdb.Error as exc:
            raise SQLError(f"{_one_line(exc)} ({self.describe()})") from exc
        if len(statements) != 1:
            raise SQLError(f"expected exactly one statement, got {len(statements)}")
        stmt = statements[0]
        if stmt.type not in _ALLOWED:
            raise SQLError(f"read-only: {stmt.type.name} statements are not allowed, only SELECT queries")
        sql = stmt.query.strip().rstrip(";")
        if limit is not None and stmt.type == duckdb.StatementType.SELECT:
            sql = f"SELECT * FROM ({sql}) AS _q LIMIT {int(limit)}"
        timer = threading.Timer(timeout_s, self.con.interrupt)
        timer.start()
        try:
            return self.con.sql(sql).to_arrow_table()
        except duckdb.InterruptException as exc:
            raise SQLError(f"query interrupted after the {timeout_s:g} s timeout") from exc
        except duckdb.Error as exc:
            raise SQLError(f"{_one_line(exc)} ({self.describe()})") from exc
        finally:
            timer.cancel()
