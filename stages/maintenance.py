"""Warehouse maintenance: vacuum, keeping every table version a registered model was trained on.

A model's registry row records the Lance version of every table its run read
(``table_versions_json``), so :func:`stages.versions.training_set` can read the exact training set back
by time travel. :func:`vacuum` pins those versions (Lance tags ``pin-model-<name>-v<version>``) before
:meth:`warehouse.Warehouse.vacuum` deletes old versions, so the registry never names a version that
is gone.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from stages.results import StageResult
from stages.versions import list_models
from warehouse.vacuum import VacuumReport

if TYPE_CHECKING:
    from warehouse import Warehouse

__all__ = ["VacuumResult", "model_pins", "vacuum"]

METADATA_PREFIX = "vacuum_"
"""The ``vacuum`` op's metadata: one ``vacuum_<table>`` entry per table (its :class:`VacuumReport`)."""


@dataclasses.dataclass(frozen=True)
class VacuumResult(StageResult):
    """What :func:`vacuum` did, table by table (the ``vacuum`` job's metadata and the CLI's table)."""

    reports: tuple[VacuumReport, ...] = ()

    def to_metadata(self) -> dict[str, Any]:
        return {f"{METADATA_PREFIX}{r.table}": dataclasses.asdict(r) for r in self.reports}

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> VacuumResult:
        return cls(tuple(VacuumReport(**v) for k, v in meta.items() if k.startswith(METADATA_PREFIX)))


def model_pins(wh: Warehouse) -> dict[str, dict[str, int]]:
    """``model-<name>-v<version>`` -> ``{table: version}`` read by that model version, for every registry row."""
    return {f"model-{row['name']}-v{row['version']}": {t: int(v) for t, v in json.loads(row["table_versions_json"]).items()}
            for row in list_models(wh)}


def vacuum(
    wh: Warehouse,
    *,
    older_than: timedelta | None = None,
    grace: timedelta | None = None,
    compact: bool = True,
    tables: Sequence[str] | None = None,
) -> VacuumResult:
    """:meth:`warehouse.Warehouse.vacuum` keeping the table versions every registered model names.

    Parameters
    ----------
    older_than, grace, compact, tables
        See :meth:`warehouse.Warehouse.vacuum`.
    """
    return VacuumResult(tuple(wh.vacuum(keep_versions=model_pins(wh), tables=tables, older_than=older_than,
                                        grace=grace, compact=compact)))
