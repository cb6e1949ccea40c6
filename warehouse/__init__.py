"""The AstroVision warehouse: versioned Lance tables, DuckDB SQL and vector search.

This is the only package that imports duckdb, lance or lancedb.
"""

from warehouse.errors import SQLError, WarehouseError
from warehouse.schemas import TableSpec, get, register, registered
from warehouse.sqltext import ident, quote
from warehouse.store import Warehouse, resolve_root

__all__ = [
    "SQLError",
    "TableSpec",
    "Warehouse",
    "WarehouseError",
    "get",
    "ident",
    "quote",
    "register",
    "registered",
    "resolve_root",
]
