"""The AstroVision warehouse: versioned Lance tables, DuckDB SQL and vector search.

This is the only package that imports duckdb, lance or lancedb.
"""

from warehouse.errors import SQLError, WarehouseError
from warehouse.facade import Warehouse
from warehouse.schemas import TableSpec, get, register, registered
from warehouse.session import ReadSession, Snapshot, snapshot_of
from warehouse.sqltext import ident, quote
from warehouse.store import TableStore, resolve_root

__all__ = [
    "ReadSession",
    "SQLError",
    "Snapshot",
    "TableSpec",
    "TableStore",
    "Warehouse",
    "WarehouseError",
    "get",
    "ident",
    "quote",
    "register",
    "registered",
    "resolve_root",
    "snapshot_of",
]
