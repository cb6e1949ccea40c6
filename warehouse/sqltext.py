"""SQL text for values the code itself puts into Lance filters and DuckDB queries.

Only for values the code chooses (ids, shard keys, model names): user-written SQL is never pasted
into other SQL; it is parsed by DuckDB (see :mod:`warehouse.sql_engine`). One copy for the whole
project; it imports nothing, so :mod:`warehouse.store` and :mod:`warehouse.search` both use it
without importing each other.
"""

from __future__ import annotations

__all__ = ["ident", "quote"]


def quote(value: str) -> str:
    """A SQL string literal, for Lance filters and DuckDB alike (single quotes doubled).

    Examples
    --------
    >>> quote("a'b")
    "'a''b'"
    """
    return "'" + str(value).replace("'", "''") + "'"


def ident(name: str) -> str:
    """A quoted SQL identifier (double quotes doubled), e.g. a column name that is a keyword."""
    return '"' + str(name).replace('"', '""') + '"'
