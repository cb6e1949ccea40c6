"""The project's definitions with the Dask executor (:mod:`dagster_project.dask_executor`) for every job.

The same assets, resources, jobs and loggers as :mod:`dagster_project.definitions`; only where steps run
differs. :func:`dagster_project.executors.reconstructable_job` points the Dask workers here, and it can
be loaded as a code location of its own (``dagster dev -m dagster_project.dask_definitions``) to launch
runs on a cluster from the UI (the cluster in the run config: ``docs/scale_out.md``).
Importing it needs the optional dependency ``astrovision[dask]``.
"""

from __future__ import annotations

import dagster as dg

from dagster_project.dask_executor import dask_executor
from dagster_project.definitions import defs as _local_defs

__all__ = ["defs"]

defs = dg.Definitions.merge(_local_defs, dg.Definitions(executor=dask_executor))
"""Every asset and job of :data:`dagster_project.definitions.defs`, executed on Dask."""
