"""The AstroVision warehouse: versioned Lance tables, DuckDB SQL and vector search.

This is the only package that imports duckdb, lance or lancedb. Its public names are imported on
first use (PEP 562 ``__getattr__``), so ``import warehouse.errors`` or ``warehouse.settings`` (the
CLI's start, ``--help``) does not load Lance, pyarrow and DuckDB.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from warehouse.errors import SQLError, WarehouseError
    from warehouse.facade import Warehouse
    from warehouse.schemas import TableSpec, get, register, registered
    from warehouse.session import ReadSession, Snapshot, snapshot_of
    from warehouse.settings import AstroSettings
    from warehouse.sqltext import ident, quote
    from warehouse.store import TableStore, resolve_root

_HOMES = {
    "AstroSettings": "settings",
    "ReadSession": "session",
    "SQLError": "errors",
    "Snapshot": "session",
    "TableSpec": "schemas",
    "TableStore": "store",
    "Warehouse": "facade",
    "WarehouseError": "errors",
    "get": "schemas",
    "ident": "sqltext",
    "quote": "sqltext",
    "register": "schemas",
    "registered": "schemas",
    "resolve_root": "store",
    "snapshot_of": "session",
}
"""The module of each public name (constant)."""

__all__ = [
    "AstroSettings",
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


def __getattr__(name: str) -> Any:
    """The public ``name``, imported from its module on first use."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'warehouse' has no attribute {name!r}")
    return getattr(import_module(f"warehouse.{home}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
