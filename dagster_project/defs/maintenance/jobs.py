"""Maintenance jobs: ``vacuum`` (compaction, old versions, leftovers of killed writes).

A job of one op rather than an asset: vacuum makes no data, and an asset would run with every
``materialize`` of the whole graph. The op ``vacuum_warehouse`` (an op and a job may not share a name)
calls :func:`stages.maintenance.vacuum`, which keeps the table versions every registered model names;
one ``vacuum_<table>`` metadata entry per table shows what it removed in the UI.
"""

from datetime import timedelta

import dagster as dg
from pydantic import Field

from dagster_project.metadata import as_metadata
from dagster_project.resources import WarehouseResource

__all__ = ["VacuumConfig", "defs", "vacuum_job", "vacuum_warehouse"]


class VacuumConfig(dg.Config):
    """Run configuration of ``vacuum``."""

    older_than_hours: float = Field(default=7 * 24.0, description="unpinned versions older than this go (0: all but the latest)")
    grace_hours: float = Field(
        default=1.0, description="the longest a read or write may take: younger leftovers and versions superseded "
                                 "more recently stay (0 only when nothing else uses the warehouse)")
    compact: bool = Field(default=True, description="rewrite small fragments first")
    tables: list[str] | None = Field(default=None, description="only these tables (default: all)")


@dg.op(description="compact every table, delete old unpinned versions and leftovers of killed writes")
def vacuum_warehouse(context: dg.OpExecutionContext, config: VacuumConfig, warehouse: WarehouseResource) -> list[dict]:
    from stages.maintenance import vacuum as run_vacuum

    out = run_vacuum(warehouse.open(), older_than=timedelta(hours=config.older_than_hours),
                     grace=timedelta(hours=config.grace_hours), compact=config.compact, tables=config.tables)
    metadata = as_metadata(out)
    context.add_output_metadata(metadata)
    return list(metadata.values())


@dg.job(name="vacuum", description="warehouse maintenance: Lance compaction and cleanup, keeping model-named versions")
def vacuum_job() -> None:
    vacuum_warehouse()


defs = dg.Definitions(jobs=[vacuum_job])
