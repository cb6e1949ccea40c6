"""Read-only SQL over the warehouse with DuckDB.

Each Lance table is registered in an in-memory DuckDB connection as an Arrow dataset (DuckDB scans it
directly, pushing projections and filters down; nothing is copied), registered tables that do not
exist yet appear as empty views with their declared schema, and the views in ``sql/*.sql`` are
created on top, in file-name order.

User queries are guarded: DuckDB's own parser decides what a query is (never its text): one
statement, a ``SELECT`` (``WITH``, ``DESCRIBE``, ``SHOW`` and ``SUMMARIZE`` parse as one) or an
``EXPLAIN [ANALYZE]`` of a ``SELECT``; no file or network access (``enable_external_access = false``,
configuration locked); a row limit applied to the parsed relation (the query text is never wrapped,
so a trailing ``-- comment`` is harmless), with :attr:`SQLResult.truncated` saying when it cut rows;
and a timeout that interrupts the query. A caller's filter (``similar --where``) is bound as one SQL
expression (:meth:`SQLEngine.select_where`), never pasted into a query.

Each engine runs under :class:`SQLLimits`: DuckDB's ``memory_limit`` and ``threads`` (set before the
configuration is locked), the timeout, and a cap on the bytes a result may hold (read batch by batch,
so an oversized answer stops at the cap). Path-valued settings (home, temp, secret and extension
directories) are emptied, so ``duckdb_settings()`` names no directory of the machine (no spilling to disk).

Results are made portable (:func:`portable_projection`): DuckDB types that Arrow, Parquet, JSON or
polars cannot carry faithfully (``HUGEINT`` beyond 38 digits, ``UHUGEINT``, ``INTERVAL``, ``UNION``,
``TIMETZ``, ``BIT``, ``BIGNUM``, and nested types holding them) come back as text or ``DECIMAL(38,0)``,
and a date outside the years 1-9999 (``infinity``) is an error naming its column, never a crash later.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pyarrow as pa

from warehouse import schemas
from warehouse.errors import SQLError

if TYPE_CHECKING:  # duckdb is imported where used: a command that runs no query (a record) skips it
    import duckdb
    import polars as pl

    from warehouse.store import TableStore

__all__ = ["SQLEngine", "SQLLimits", "SQLResult", "Watchdog", "explained_statement", "portable_projection", "view_files"]

_T = TypeVar("_T")


def view_files() -> list[Path]:
    """The ``sql/*.sql`` view definitions shipped with the package, in load order."""
    root = resources.files("sql")
    return sorted((Path(str(p)) for p in root.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_AS_TEXT = re.compile(r"\b(U?HUGEINT|INTERVAL|UNION|TIME WITH TIME ZONE|BIT|BIGNUM|VARINT)\b")
"""DuckDB type names (also inside nested types) that a result carries as text."""
_DATES = ("date", "timestamp", "timestamp with time zone", "timestamp_s", "timestamp_ms", "timestamp_ns")


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def portable_projection(columns: Sequence[str], types: Sequence[duckdb.DuckDBPyType]) -> list[str] | None:
    """Expressions (over ``#1``, ``#2``, ...) that make a result's columns portable, or None if all already are.

    * ``HUGEINT`` -> ``DECIMAL(38,0)`` (Arrow's widest decimal; a larger value is an error naming the
      column, where DuckDB's Arrow export would wrap it silently);
    * ``UHUGEINT``, ``INTERVAL``, ``UNION``, ``TIMETZ`` (Arrow drops the offset), ``BIT``, ``BIGNUM``,
      and any ``LIST``/``STRUCT``/``MAP``/``ARRAY`` holding one -> ``VARCHAR`` (DuckDB's own text);
    * ``DATE`` / ``TIMESTAMP*`` outside the years 1-9999 (``infinity`` included; Python and polars
      cannot hold them) -> an error naming the column.
    """
    exprs, changed = [], False
    for i, (name, dtype) in enumerate(zip(columns, types), start=1):
        col, kind, text = f"#{i}", dtype.id, str(dtype).upper()
        say = _sql_text(f'column "{name}" ({text})')
        if kind == "hugeint":
            expr = (f"COALESCE(TRY_CAST({col} AS DECIMAL(38,0)), CASE WHEN {col} IS NULL THEN NULL ELSE "
                    f"error({say} || ' holds a value beyond 38 digits; cast it to VARCHAR') END)")
        elif _AS_TEXT.search(text):
            expr = f"CAST({col} AS VARCHAR)"
        elif kind in _DATES:
            expr = (f"CASE WHEN {col} IS NULL OR (isfinite({col}) AND year({col}) BETWEEN 1 AND 9999) THEN {col} "
                    f"ELSE error({say} || ' holds a date outside the years 1-9999 (or infinity); "
                    f"cast it to VARCHAR') END")
        else:
            exprs.append(f"{col} AS {_ident(name)}")
            continue
        changed = True
        exprs.append(f"{expr} AS {_ident(name)}")
    return exprs if changed else None


class Watchdog:
    """One thread that calls each armed callback once its deadline passes (a query's ``interrupt``).

    A server's queries share one (:class:`warehouse.session.ReadSession` owns it) instead of starting a
    ``threading.Timer`` per query: starting a thread waits until it runs, ~1 ms on a busy 2-core machine.
    The thread starts on an :meth:`arm`, sleeps until the nearest deadline, and ends once nothing was
    armed for ``idle_s`` seconds (a session left behind leaves no thread).
    """

    def __init__(self, idle_s: float = 5.0) -> None:
        self.idle_s = float(idle_s)
        self._cond = threading.Condition()
        self._due: dict[int, tuple[float, Callable[[], object]]] = {}
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, timeout_s: float, callback: Callable[[], object]) -> int:
        """Call ``callback`` in ``timeout_s`` seconds unless :meth:`disarm` is called with the token first."""
        with self._cond:
            token = next(self._tokens)
            self._due[token] = (time.monotonic() + timeout_s, callback)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sql-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
            return token

    def disarm(self, token: int) -> None:
        """Forget an armed callback (a no-op once it was called)."""
        with self._cond:
            self._due.pop(token, None)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for token in [t for t, (due, _) in self._due.items() if due <= now]:
                    self._due.pop(token)[1]()
                if not self._due:
                    self._cond.wait(self.idle_s)
                    if not self._due:
                        self._thread = None
                        return
                    continue
                self._cond.wait(min(due for due, _ in self._due.values()) - now)


@dataclass(frozen=True)
class SQLLimits:
    """What one engine may use (the server sets them per request from its settings).

    Attributes
    ----------
    timeout_s : float
        A query (or a ``where`` filter) is interrupted after this long.
    memory_limit : str or None
        DuckDB's ``memory_limit`` (``"1GB"``, ...); ``None``: DuckDB's default (80 % of the RAM).
    threads : int
        DuckDB's ``threads``.
    max_bytes : int or None
        Largest result (Arrow bytes) a query may return; ``None``: no cap.
    """

    timeout_s: float = 60.0
    memory_limit: str | None = None
    threads: int = 2
    max_bytes: int | None = None


@dataclass(frozen=True)
class SQLResult:
    """What a query returned, and whether the row limit cut it.

    Attributes
    ----------
    table : pyarrow.Table
        At most ``limit`` rows.
    truncated : bool
        The query had more rows than ``limit``; only the first ``limit`` are here.
    limit : int or None
        The row limit that applied (``None``: none).
    """

    table: pa.Table
    truncated: bool
    limit: int | None

    @property
    def frame(self) -> pl.DataFrame:
        """:attr:`table` as a polars DataFrame."""
        import polars as pl  # imported on use: a command that never asks for a frame does not pay for it

        return pl.from_arrow(self.table)  # type: ignore[return-value]


def explained_statement(query: str) -> str:
    """The statement an ``EXPLAIN [ANALYZE] [(options)] <statement>`` query explains, as text.

    Found with DuckDB's tokenizer (keywords and brackets, comments skipped), so the caller can parse
    the explained statement on its own and see its type.

    Raises
    ------
    SQLError
        ``query`` does not start with ``EXPLAIN``.
    """
    import duckdb
    tokens = duckdb.tokenize(query)
    ends = [pos for pos, _ in tokens[1:]] + [len(query)]
    words = [(pos, query[pos:end].strip()) for (pos, kind), end in zip(tokens, ends)
             if kind != duckdb.token_type.comment]
    if not words or words[0][1].upper() != "EXPLAIN":
        raise SQLError("not an EXPLAIN statement")
    i = 1
    if i < len(words) and words[i][1].upper() == "ANALYZE":
        i += 1
    if i < len(words) and words[i][1].startswith("("):
        depth = 0
        while i < len(words):
            depth += words[i][1].count("(") - words[i][1].count(")")
            i += 1
            if depth <= 0:
                break
    return query[words[i][0]:] if i < len(words) else ""


class SQLEngine:
    """An in-process DuckDB connection with every warehouse table and view registered."""

    def __init__(self, warehouse: TableStore, version: dict[str, int] | None = None,
                 limits: SQLLimits | None = None, *, prepare: Callable[[SQLEngine], None] | None = None,
                 parent: SQLEngine | None = None) -> None:
        """Parameters: ``prepare`` runs once the tables and views exist, before the configuration is
        locked and file access is turned off (e.g. to add an in-memory table); ``parent`` makes this
        engine a cursor of the parent's database: its settings (locked), macros, views and tables are
        shared, and the Lance tables are registered again here (registrations belong to a connection),
        so each thread has its own connection over one database.
        """
        import duckdb
        self.warehouse = warehouse
        self.relations: list[str] = []
        self.watchdog: Watchdog | None = parent.watchdog if parent is not None else None
        """What interrupts a query past its timeout (a session's, shared); None: a timer thread per query."""
        if parent is not None:
            self.limits = parent.limits
            self.con = parent.con.cursor()
            self._register_tables(version or {})
            self.views = list(parent.views)
            return
        self.limits = limits or SQLLimits()
        self.con = duckdb.connect(":memory:")
        self._configure()
        self._register_tables(version or {})
        self._create_constants()
        self.views = self._create_views()
        if prepare is not None:
            prepare(self)
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")

    def _configure(self) -> None:
        """Threads, memory limit, and no directory of the machine in the settings (before the lock)."""
        import duckdb
        lim = self.limits
        if int(lim.threads) < 1:
            raise SQLError(f"threads must be at least 1, got {lim.threads}")
        self.con.execute(f"SET threads TO {int(lim.threads)}")
        if lim.memory_limit is not None:
            try:
                self.con.execute(f"SET memory_limit = {_sql_text(str(lim.memory_limit))}")
            except duckdb.Error as exc:
                raise SQLError(f"bad memory limit {lim.memory_limit!r}: {_one_line(exc)}") from exc
        for name in ("home_directory", "temp_directory", "secret_directory", "extension_directory"):
            self.con.execute(f"SET {name} = ''")

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
        import duckdb
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

    def check(self, query: str) -> duckdb.Statement:
        """The one statement of ``query`` if DuckDB's parser says it only reads, else ``SQLError``.

        Allowed: one ``SELECT`` (incl. ``WITH``/``DESCRIBE``/``SHOW``/``SUMMARIZE``), or ``EXPLAIN``
        / ``EXPLAIN ANALYZE`` of one ``SELECT`` (``EXPLAIN ANALYZE`` executes what it explains).
        """
        import duckdb
        statements = self._parse(query)
        if len(statements) != 1:
            raise SQLError(f"expected exactly one statement, got {len(statements)}")
        stmt = statements[0]
        if stmt.type == duckdb.StatementType.EXPLAIN:
            inner = self._parse(explained_statement(stmt.query))
            if len(inner) != 1 or inner[0].type != duckdb.StatementType.SELECT:
                kind = inner[0].type.name if len(inner) == 1 else f"{len(inner)} statements"
                raise SQLError(f"read-only: EXPLAIN of {kind} is not allowed, only EXPLAIN of a SELECT query")
        elif stmt.type != duckdb.StatementType.SELECT:
            raise SQLError(f"read-only: {stmt.type.name} statements are not allowed, only SELECT queries")
        return stmt

    def _parse(self, query: str) -> list[duckdb.Statement]:
        import duckdb
        try:
            return self.con.extract_statements(query)
        except duckdb.Error as exc:
            raise SQLError(f"{_one_line(exc)} ({self.describe()})") from exc

    def _timed(self, work: Callable[[], _T], timeout_s: float | None) -> _T:
        """Run ``work`` on the connection, interrupted after ``timeout_s``; DuckDB errors as one line."""
        import duckdb
        timeout_s = self.limits.timeout_s if timeout_s is None else timeout_s
        if self.watchdog is not None:
            token = self.watchdog.arm(timeout_s, self.con.interrupt)
            stop = lambda: self.watchdog.disarm(token)  # noqa: E731
        else:
            timer = threading.Timer(timeout_s, self.con.interrupt)
            timer.start()
            stop = timer.cancel
        try:
            return work()
        except duckdb.InterruptException as exc:
            raise SQLError(f"query interrupted after the {timeout_s:g} s timeout") from exc
        except duckdb.OutOfMemoryException as exc:
            raise SQLError(f"the query needs more than the {self.limits.memory_limit or 'default'} memory limit "
                           f"of a query here: {_one_line(exc)}") from exc
        except duckdb.InvalidInputException as exc:
            if 'column "' in str(exc):  # a portable_projection refusal: say it without the table list
                raise SQLError(_one_line(exc).removeprefix("Invalid Input Error: ")) from exc
            raise SQLError(f"{_one_line(exc)} ({self.describe()})") from exc
        except duckdb.Error as exc:
            raise SQLError(f"{_one_line(exc)} ({self.describe()})") from exc
        finally:
            stop()

    def _read(self, rel: duckdb.DuckDBPyRelation, capped: bool = True) -> pa.Table:
        """The relation's rows as Arrow, made portable, read in batches so :attr:`SQLLimits.max_bytes` stops it."""
        exprs = portable_projection(rel.columns, rel.types)
        if exprs is not None:
            rel = rel.project(", ".join(exprs))
        cap = self.limits.max_bytes if capped else None
        if cap is None:
            return rel.to_arrow_table()
        reader = rel.to_arrow_reader(2048)
        batches, size = [], 0
        for batch in reader:
            size += batch.nbytes
            if size > cap:
                raise SQLError(f"the result holds more than the {cap} byte cap of an answer here (after "
                               f"{sum(b.num_rows for b in batches)} rows); select fewer rows or columns")
            batches.append(batch)
        return pa.Table.from_batches(batches, schema=reader.schema)

    def run(self, query: str, *, limit: int | None = 10_000, timeout_s: float | None = None,
            capped: bool = True) -> SQLResult:
        """Run one read-only query (see :meth:`check`).

        Parameters
        ----------
        query : str
            One SELECT (or WITH ... SELECT, DESCRIBE, EXPLAIN SELECT ...) statement.
        limit : int or None
            At most this many rows come back (``None``: no limit); one row more is fetched, so
            :attr:`SQLResult.truncated` says whether the limit cut the result.
        timeout_s : float, optional
            The query is interrupted after this many seconds (default: :attr:`SQLLimits.timeout_s`).
        capped : bool
            Whether :attr:`SQLLimits.max_bytes` applies. It bounds what is answered to a user; the code's
            own reads (the held ``galaxy_features`` of a server: ~0.5 GiB at 1M rows) pass False.

        Raises
        ------
        SQLError
            One line: what went wrong, plus the tables and views that exist; a result over
            :attr:`SQLLimits.max_bytes`, or a column no face can carry (named).
        """
        import duckdb
        stmt = self.check(query)
        cap = None if limit is None or stmt.type != duckdb.StatementType.SELECT else max(int(limit), 0)

        def work() -> pa.Table:
            # the limit is written into the statement: the relation API's ``limit`` derives a new relation
            # in Python (binding it over stand-in tables), ~5 ms per query, as long as an indexed point query
            text = stmt.query if cap is None else f"SELECT * FROM (\n{stmt.query}\n) LIMIT {cap + 1}"
            rel = self.con.sql(text)
            if rel is None:
                return pa.table({})
            return self._read(rel, capped)

        table = self._timed(work, timeout_s)
        if cap is not None and table.num_rows > cap:
            return SQLResult(table.slice(0, cap), True, cap)
        return SQLResult(table, False, cap)

    def query(self, query: str, *, limit: int | None = 10_000, timeout_s: float | None = None) -> pl.DataFrame:
        """:meth:`run`, returning only the rows as a polars DataFrame."""
        return self.run(query, limit=limit, timeout_s=timeout_s).frame

    def query_arrow(self, query: str, *, limit: int | None = 10_000, timeout_s: float | None = None) -> pa.Table:
        """:meth:`run`, returning only the rows as an Arrow table."""
        return self.run(query, limit=limit, timeout_s=timeout_s).table

    def select_where(self, query: str, where: str, *, columns: Sequence[str] | None = None,
                     timeout_s: float | None = None) -> pa.Table:
        """The rows of ``query`` that satisfy ``where``, a caller's filter bound as one SQL expression.

        ``where`` is parsed by DuckDB as a single expression (``duckdb.SQLExpression``) and applied
        with the relational API, so text such as ``1=1) UNION SELECT ...`` or ``x; DROP ...`` is a
        parse error, while ``label_name = 'a;b'`` is an ordinary comparison.

        Parameters
        ----------
        query : str
            One SELECT (checked like any query); code-written, e.g. the galaxy features.
        where : str
            One SQL expression over the columns of ``query``.
        columns : sequence of str, optional
            Only these columns of the matching rows.

        Raises
        ------
        SQLError
            ``where`` is not one expression, names an unknown column, or the query failed.
        """
        import duckdb
        stmt = self.check(query)
        try:
            expr = duckdb.SQLExpression(where)
        except duckdb.Error as exc:
            raise SQLError(f"where must be one SQL expression: {_one_line(exc)} (in {where!r})") from exc

        def work() -> pa.Table:
            rel = self.con.sql(stmt.query).filter(expr)
            if columns:
                rel = rel.select(*(duckdb.ColumnExpression(c) for c in columns))
            return rel.to_arrow_table()

        return self._timed(work, timeout_s)
