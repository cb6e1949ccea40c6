"""``--workers``, ``--executor`` and ``--dask-address``: how many shards run at once, and where their steps run.

Shared by ``ingest``, ``materialize`` and ``demo``; the executors are described in
:mod:`dagster_project.executors` and ``docs/scale_out.md``.
"""

from __future__ import annotations

import argparse

from dagster_project.executors import EXECUTORS, Execution

__all__ = ["add_execution_args", "execution_from"]


def add_execution_args(p: argparse.ArgumentParser) -> None:
    """Add the three options to a sub-command's parser."""
    p.add_argument("--workers", type=int, default=1,
                   help="shards materialized at once, each run in its own process with cores/workers cores, "
                        "and as many unpartitioned steps side by side (default 1: one shard after another, in "
                        "this process, every step with every core; measured faster than one per core on the "
                        "2-core demo, docs/benchmarks.md)")
    p.add_argument("--executor", choices=EXECUTORS, default=None,
                   help="where each run's steps execute: in_process (in the run's process; the default), "
                        "multiprocess (a process per step, Dagster's multiprocess executor) or dask "
                        "(a Dask LocalCluster of --workers processes, or --dask-address)")
    p.add_argument("--dask-address", default=None,
                   help="an existing Dask scheduler (tcp://host:8786, e.g. a dask-jobqueue SLURM cluster); "
                        "implies --executor dask")


def execution_from(args: argparse.Namespace) -> Execution:
    """The :class:`Execution` the options ask for; a one-line InputError for bad values (nothing written)."""
    return Execution.of(workers=args.workers, executor=args.executor, dask_address=args.dask_address)
