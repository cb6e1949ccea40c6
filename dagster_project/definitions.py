"""The Dagster code location: every ``defs`` found under :mod:`dagster_project.defs`, merged, plus the
named jobs (:mod:`dagster_project.jobs`) and loggers (:mod:`dagster_project.loggers`)."""

from __future__ import annotations

import importlib
import pkgutil

import dagster as dg

from dagster_project import defs as _defs_pkg
from dagster_project.jobs import JOBS
from dagster_project.loggers import LOGGERS
from dagster_project.resources import WarehouseResource


def _collect() -> dg.Definitions:
    found = []
    for info in pkgutil.walk_packages(_defs_pkg.__path__, prefix=_defs_pkg.__name__ + "."):
        module = importlib.import_module(info.name)
        if isinstance(getattr(module, "defs", None), dg.Definitions):
            found.append(module.defs)
    return dg.Definitions.merge(
        *found, dg.Definitions(resources={"warehouse": WarehouseResource()}, jobs=JOBS, loggers=LOGGERS)
    )


defs = _collect()
