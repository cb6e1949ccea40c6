""":class:`Warehouse`: the table store with its clients (read-only SQL, vector search, vacuum) as methods.

The storage (:class:`warehouse.store.TableStore`) knows nothing of these; each client is built on it
and imports it, and this class only puts them together for callers (``wh.sql(...)``,
``wh.similar(...)``, ``wh.vacuum()``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from warehouse.sql_engine import SQLEngine, SQLResult
from warehouse.store import TableStore
from warehouse.vacuum import DEFAULT_GRACE, DEFAULT_OLDER_THAN, VacuumReport, vacuum_table

if TYPE_CHECKING:
    import polars as pl

__all__ = ["Warehouse"]


class Warehouse(TableStore):
    """A warehouse root holding versioned Lance tables, with SQL, search and vacuum (see :class:`TableStore`)."""

    def vacuum(
        self,
        *,
        keep_versions: Mapping[str, Mapping[str, int]] | None = None,
        tables: Sequence[str] | None = None,
        older_than: timedelta | None = None,
        grace: timedelta | None = None,
        compact: bool = True,
    ) -> list[VacuumReport]:
        """Compact every table, delete old versions and the leftovers of killed writes.

        See :mod:`warehouse.vacuum` for the rules (what is kept, and why young files and recently
        superseded versions stay while writers may be using them).

        Parameters
        ----------
        keep_versions : mapping, optional
            Name -> ``{table: version}``: versions kept whatever their age (e.g. the input tables of
            every registered model), as Lance tags ``pin-<name>``.
        tables : sequence of str, optional
            Default: every table.
        older_than, grace : timedelta, optional
            Defaults :data:`warehouse.vacuum.DEFAULT_OLDER_THAN` (7 days) and
            :data:`warehouse.vacuum.DEFAULT_GRACE` (1 hour: the longest a read or write may take).
        compact : bool
            Rewrite small fragments first.
        """
        keep = keep_versions or {}
        reports = []
        for table in tables if tables is not None else self.tables():
            pins = {name: int(versions[table]) for name, versions in keep.items() if table in versions}
            reports.append(vacuum_table(
                self, table, pins=pins, compact=compact,
                older_than=DEFAULT_OLDER_THAN if older_than is None else older_than,
                grace=DEFAULT_GRACE if grace is None else grace,
            ))
        return reports

    def sql(self, query: str, *, limit: int | None = 10_000, timeout_s: float | None = None) -> pl.DataFrame:
        """Run a read-only SQL query over every table and view; see :class:`warehouse.sql_engine.SQLEngine`.

        A result cut at ``limit`` rows comes with a ``UserWarning`` saying so; :meth:`sql_result`
        returns the flag itself.
        """
        result = self.sql_result(query, limit=limit, timeout_s=timeout_s)
        if result.truncated:
            warnings.warn(f"SQL result cut at the row limit {result.limit}; pass limit=None or a larger limit",
                          UserWarning, stacklevel=2)
        return result.frame

    def sql_result(self, query: str, *, limit: int | None = 10_000, timeout_s: float | None = None) -> SQLResult:
        """:meth:`sql` returning a :class:`warehouse.sql_engine.SQLResult` (rows plus ``truncated``)."""
        return SQLEngine(self).run(query, limit=limit, timeout_s=timeout_s)

    def similar(self, query: Any, k: int = 10, where: str | None = None, encoder: str | None = None,
                **kwargs: Any) -> pl.DataFrame:
        """Lookalike galaxies by embedding similarity; see :func:`warehouse.search.similar_plan`."""
        # imported here: the search package imports this module (a snapshot is a Warehouse)
        from warehouse.search import similar_plan

        return similar_plan(self, query, k=k, where=where, encoder=encoder, **kwargs).neighbours
