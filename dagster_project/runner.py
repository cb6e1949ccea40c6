"""Run named asset jobs for the CLI: every shard's assets, then the unpartitioned ones.

The runs are ordinary Dagster runs of the jobs in :mod:`dagster_project.jobs`, recorded in the instance
under the warehouse root, so ``astrovision ui`` lists them by job name (with lineage, metadata and
checks) and any asset can be re-materialized there. Three modules do the work, this one ties them:

- :mod:`dagster_project.plan`: which runs, in which order (:func:`~dagster_project.plan.plan_runs`, pure);
- :mod:`dagster_project.launch`: executing them, in process or in run processes, on public Dagster APIs;
- :mod:`dagster_project.report`: what they did (:class:`PipelineReport`), failures recorded in one place;

and :mod:`dagster_project.instance` keeps the instance safe to share between CLI processes
(:func:`instance_for`, :func:`mark_orphaned_runs`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

import dagster as dg
from tqdm.auto import tqdm

from dagster_project.executors import Execution, dask_cluster, split_cores_config, step_threads
from dagster_project.instance import (
    HOST_TAG,
    PID_START_TAG,
    PID_TAG,
    add_shards,
    instance_for,
    mark_orphaned_runs,
    process_tags,
)
from dagster_project.jobs import job_for_groups
from dagster_project.launch import InlinePool, Launch, Pool, launch_runs, project_defs, run_processes
from dagster_project.plan import asset_graph, plan_runs, select_assets
from dagster_project.report import PipelineReport
from features.errors import InputError
from features.parallel import warm_imports
from warehouse import Warehouse

__all__ = [
    "HOST_TAG",
    "PID_START_TAG",
    "PID_TAG",
    "PipelineReport",
    "add_shards",
    "instance_for",
    "mark_orphaned_runs",
    "modules_to_warm",
    "project_defs",
    "run_pipeline",
    "start_warm_imports",
]

WARM_IMPORTS: dict[str, tuple[str, ...]] = {
    "pytorch": ("torch", "torchvision", "timm"),
    "embedding_index": ("lancedb",),
}
"""Libraries imported in the background once the first run of an in-process command is done, by the
selected assets' Dagster kind or by asset name (:func:`features.parallel.warm_imports`): ~6 s of one core
for the torch stack and ~1.5 s for lancedb, spent while the shards' pools keep the cores busy instead of
at the first step that needs them (measured in ``docs/benchmarks.md``, "The demo's idle cores")."""

WARM_FIRST = ("PIL.Image", "PIL.ImageDraw", "PIL.ImageFont", "urllib3", "idna", "sortedcontainers")
"""What both the warmed libraries and the shard steps import (``tests/test_warm_imports.py``): imported
in this thread before the warm-up starts (~0.1 s), so no module is imported by two threads at once."""


def start_warm_imports(groups: Sequence[str] | None = None, assets: Sequence[str] | None = None,
                       defs: dg.Definitions | None = None) -> threading.Thread | None:
    """Start the warm-up of :data:`WARM_IMPORTS` for the assets a later :func:`run_pipeline` of ``groups``
    and ``assets`` will run, now: for a command with work of its own first (the demo renders its survey
    on every core before its first run). Returns the thread, or None."""
    selection = select_assets(asset_graph(project_defs() if defs is None else defs), groups, assets)
    return warm_imports(modules_to_warm(selection), first=WARM_FIRST)


def modules_to_warm(selection: Mapping[str, Any]) -> list[str]:
    """The :data:`WARM_IMPORTS` of the assets in ``selection`` (name -> :class:`~dagster_project.plan.AssetNode`),
    each module once, in the table's order."""
    out: list[str] = []
    for name, node in selection.items():
        for key in (*sorted(node.kinds), name):
            out += [m for m in WARM_IMPORTS.get(key, ()) if m not in out]
    return out


_QUIET_LOGGERS = {"console": {"config": {"log_level": "CRITICAL"}}}
"""Dagster's console logger stays quiet: the runner reports failures itself, one line each."""


def _run_config(wh: Warehouse, defs: dg.Definitions, run_config: Mapping[str, Any] | None,
                asset_logs: bool) -> dict[str, Any]:
    """The command's run config with quiet loggers (plus ``messages``) and this warehouse's root."""
    loggers = {**_QUIET_LOGGERS, **({"messages": {"config": {}}} if asset_logs else {})}
    config: dict[str, Any] = {**(run_config or {}), "loggers": loggers}
    if "warehouse" in (defs.resources or {}):  # this warehouse, whatever $ASTROVISION_HOME says
        home = {"root": str(wh.root), **({"local_home": str(wh.local_root)} if wh.location.remote else {})}
        config["resources"] = {**config.get("resources", {}), "warehouse": {"config": home}}
    return config


def _prepare_instance(wh: Warehouse, shards: Sequence[str], report: PipelineReport,
                      log: Callable[[str], None]) -> dg.DagsterInstance:
    """The warehouse's instance, the runs of dead processes in it marked failed (logged, in ``report``),
    ``shards`` registered."""
    instance = instance_for(wh)
    report.orphaned_runs = mark_orphaned_runs(instance)
    for run_id in report.orphaned_runs:
        log(f"run {run_id} was left open by a process that is gone: marked failed")
    add_shards(instance, shards)
    return instance


def _open_pool(stack: ExitStack, launch: Launch, defs: dg.Definitions, selected: set[str]) -> Pool:
    """Run processes for ``launch.execution`` (its cores split, its Dask cluster up), closed with ``stack``."""
    workers = launch.execution.workers
    if defs is not project_defs():
        raise InputError("run_pipeline: other definitions than the project's run in process only "
                         "(run processes and Dask workers import dagster_project.definitions)")
    stack.enter_context(step_threads(workers))
    address = stack.enter_context(dask_cluster(launch.execution))
    config = split_cores_config(launch.config, workers, selected)
    return stack.enter_context(run_processes(replace(launch, config=config, address=address), workers))


def run_pipeline(
    wh: Warehouse,
    shards: Sequence[str],
    *,
    groups: Sequence[str] | None = None,
    include_unpartitioned: bool = True,
    defs: dg.Definitions | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    assets: Sequence[str] | None = None,
    job: str | None = None,
    run_config: Mapping[str, Any] | None = None,
    asset_logs: bool = False,
    execution: Execution | None = None,
) -> PipelineReport:
    """Materialize assets through a named job: one run per shard, then one for the rest (in phases when
    a per-shard asset reads an unpartitioned one, see :func:`dagster_project.plan.plan_runs`).

    In process and one shard after another by default; ``execution`` runs several shard runs at once,
    each in a run process of its own, its steps there, in step processes (Dagster's multiprocess
    executor) or on a Dask cluster (:mod:`dagster_project.executors`).

    Parameters
    ----------
    wh : Warehouse
    shards : sequence of str
        Shard keys to materialize (added as dynamic partitions if new).
    groups : sequence of str, optional
        Only assets of these Dagster groups (e.g. ``["ingest"]``); default all.
    include_unpartitioned : bool
        Also run the unpartitioned assets (duplicate groups, splits, models, ...) after the shards.
    defs : Definitions, optional
        Defaults to :data:`dagster_project.definitions.defs`; other definitions run in process only
        (run processes and Dask workers import the project's).
    progress : bool
        Show a progress bar over runs.
    log : callable
        Where one-line progress messages go.
    assets : sequence of str, optional
        Only these assets (within ``groups``), e.g. ``["photometry"]``.
    job : str, optional
        The job to run; default :func:`dagster_project.jobs.job_for_groups` of ``groups``.
    run_config : mapping, optional
        Run config (``{"ops": {asset: {"config": {...}}}}``), the same for every run; config of an
        asset that a run does not select is ignored by that run.
    asset_logs : bool
        Print the assets' own log lines on stderr (the ``messages`` logger), e.g. training epochs.
    execution : Execution, optional
        Executor and number of shard runs at once (``--workers``, ``--executor``); default in process,
        one at a time; ``workers`` None: :func:`dagster_project.executors.auto_workers` of the shards.
        With ``W`` workers the morphometrics pool of each shard gets ``cores // W`` processes unless
        ``run_config`` sets its ``workers``, and the unpartitioned run's steps run side by side
        (:func:`dagster_project.launch.side_by_side`).

    Raises
    ------
    features.errors.InputError
        Unknown group or asset name, or other definitions than the project's with run processes
        (nothing is run).
    """
    defs = project_defs() if defs is None else defs
    selection = select_assets(asset_graph(defs), groups, assets)
    job_name = defs.resolve_job_def(job or job_for_groups(groups)).name
    execution = (execution or Execution()).resolved(len(shards))
    pooled = execution.workers > 1 or not execution.in_process
    report = PipelineReport()
    instance = _prepare_instance(wh, shards, report, log)
    runs = plan_runs(selection, shards, include_unpartitioned=include_unpartitioned)
    config = _run_config(wh, defs, run_config, asset_logs)
    tags = {"astrovision/trigger": "cli", **process_tags()}
    logging.getLogger("dagster").setLevel(logging.CRITICAL)
    with ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=len(runs), desc=job_name, unit="run", disable=not progress))
        launch = Launch(str(wh.root), job_name, config, tags, execution)
        pool = _open_pool(stack, launch, defs, set(selection)) if pooled else InlinePool(launch, defs, instance)
        # in process, the libraries of later steps are imported beside the runs after the first: while
        # the first run sets up, the warm-up and the main thread would only share its one core (the GIL)
        warm = [] if pooled else modules_to_warm(selection)

        def done(spec) -> None:
            bar.update(1)
            bar.set_postfix_str(spec.label)
            if warm:
                warm_imports(warm, first=WARM_FIRST)
                warm.clear()

        launch_runs(runs, pool, execution.workers, report, log, done)
    return report
