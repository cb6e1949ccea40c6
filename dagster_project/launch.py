"""Launching planned runs (:class:`dagster_project.plan.RunSpec`) on Dagster's public APIs.

One loop (:func:`launch_runs`) for every way of running: phase by phase, at most ``workers`` runs of a
phase in flight, each outcome handed to :meth:`PipelineReport.absorb`. Where a run executes is the
pool's business:

- :class:`InlinePool`: in this process, one after another (``execute_in_process``, the default);
- :func:`run_processes`: each run in a spawned run process of its own (as Dagster's default run
  launcher does, without its daemon and code server beside the CLI), its steps there, in step
  processes (Dagster's multiprocess executor) or on a Dask cluster (``dagster.execute_job`` of a
  reconstructable job, :mod:`dagster_project.executors`). The unpartitioned run of a command with
  several in-process shard runs at once runs its independent steps side by side (:func:`side_by_side`).

Not threads: Dagster's run set-up reconfigures Python logging and deadlocks against another run's
logging in the same process.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import groupby
from typing import Any, Protocol

import dagster as dg

from dagster_project.executors import Execution, execution_run_config, reconstructable_job
from dagster_project.instance import instance_for, process_tags
from dagster_project.plan import RunSpec
from dagster_project.report import PipelineReport
from warehouse import Warehouse

__all__ = ["InlinePool", "Launch", "Pool", "launch_runs", "project_defs", "run_processes", "side_by_side"]


def project_defs() -> dg.Definitions:
    """:data:`dagster_project.definitions.defs` (imported on first use: it loads every asset module)."""
    from dagster_project.definitions import defs

    return defs


@dataclass(frozen=True)
class Launch:
    """What every run of one command shares (picklable: it travels to run processes).

    Attributes
    ----------
    root : str
        The warehouse root.
    job : str
        The job's name.
    config : dict
        Run config (ops, loggers, resources), the same for every run.
    tags : dict
        Run tags (the trigger and the tags of the process that executes the run).
    execution : Execution
        The executor of the steps.
    address : str or None
        The Dask scheduler for the ``dask`` executor.
    """

    root: str
    job: str
    config: dict[str, Any]
    tags: dict[str, str]
    execution: Execution
    address: str | None = None


def execute(launch: Launch, spec: RunSpec, defs: dg.Definitions | None = None,
            instance: dg.DagsterInstance | None = None) -> PipelineReport:
    """One Dagster run of ``spec``, its orchestration in this process; what its result says.

    ``defs`` default to :func:`project_defs`; the in-process executor runs them directly, the others
    run the project's job rebuilt from its module (:func:`dagster_project.executors.reconstructable_job`).
    ``instance`` defaults to the warehouse's (:func:`dagster_project.instance.instance_for`).
    """
    logging.getLogger("dagster").setLevel(logging.CRITICAL)
    instance = instance or instance_for(Warehouse.open(launch.root))
    keys = [dg.AssetKey.from_user_string(k) for k in spec.assets]
    execution, concurrent = launch.execution, 1
    if side_by_side(launch.execution, spec):
        execution, concurrent = replace(launch.execution, executor="multiprocess"), launch.execution.workers
    if execution.in_process:
        result = (defs or project_defs()).resolve_job_def(launch.job).execute_in_process(
            run_config=launch.config, instance=instance, partition_key=spec.partition, asset_selection=keys,
            raise_on_error=False, tags=launch.tags)
        return PipelineReport.of_result(result, spec.label)
    tags = {**launch.tags, **({"dagster/partition": spec.partition} if spec.partition else {})}
    run_config = {**launch.config, **execution_run_config(execution, launch.address, concurrent)}
    with dg.execute_job(reconstructable_job(execution.executor, launch.job), instance=instance,
                        run_config=run_config, tags=tags, asset_selection=keys) as result:
        return PipelineReport.of_result(result, spec.label)


def side_by_side(execution: Execution, spec: RunSpec) -> bool:
    """Whether ``spec``'s steps run side by side: an unpartitioned run of a command with several shard
    runs at once in process (each step a process of Dagster's multiprocess executor, at most
    ``workers`` at once, each with the share of cores a shard's step has), so its independent steps
    (the SSL encoder beside the pseudo-labels and U-Net, the classifiers beside each other, the maps
    beside the probe) keep the cores busy that the shards did."""
    return spec.partition is None and execution.in_process and (execution.workers or 1) > 1


def _in_run_process(launch: Launch, spec: RunSpec) -> PipelineReport:
    """:func:`execute` in a run process, the run tagged with this process (judged by it if it dies)."""
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return execute(replace(launch, tags={**launch.tags, **process_tags()}), spec)
    finally:  # idle between runs: a pool broken by a killed sibling terminates this one, quietly
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)


def _init_run_process() -> None:
    """Run-process set-up: default SIGTERM and SIGINT (a CLI started in the background from a shell has
    them ignored, and spawned children inherit that), so stopping the CLI's process group stops its runs."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Pool(Protocol):
    """Where runs execute: ``submit(spec)`` returns the future of the run's report."""

    def submit(self, spec: RunSpec) -> Future: ...


class InlinePool:
    """Runs in this process, one at a time: ``submit`` returns when the run is done."""

    def __init__(self, launch: Launch, defs: dg.Definitions | None = None,
                 instance: dg.DagsterInstance | None = None) -> None:
        self.launch, self.defs, self.instance = launch, defs, instance

    def submit(self, spec: RunSpec) -> Future:
        done: Future = Future()  # an error of the runner itself (not of a step) raises here, as it would inline
        done.set_result(execute(self.launch, spec, self.defs, self.instance))
        return done


class _ProcessPool:
    """Each run in a spawned run process of a :class:`~concurrent.futures.ProcessPoolExecutor`."""

    def __init__(self, launch: Launch, executor) -> None:
        self.launch, self.executor = launch, executor

    def submit(self, spec: RunSpec) -> Future:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return self.executor.submit(_in_run_process, self.launch, spec)
        except BrokenProcessPool as exc:  # a run process died since the last result: this run fails too
            failed: Future = Future()
            failed.set_exception(exc)
            return failed


@contextmanager
def run_processes(launch: Launch, workers: int) -> Iterator[Pool]:
    """A pool of ``workers`` spawned run processes for the runs of ``launch``."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_init_run_process) as executor:
        yield _ProcessPool(launch, executor)


def _outcome(future: Future) -> PipelineReport | BaseException:
    try:
        return future.result()
    except Exception as exc:  # the run process died (killed, out of memory) or could not start
        return exc


def launch_runs(runs: Sequence[RunSpec], pool: Pool, workers: int, report: PipelineReport,
                log: Callable[[str], None], done: Callable[[RunSpec], None] = lambda spec: None) -> None:
    """Launch ``runs`` phase by phase, at most ``workers`` of a phase at once, into ``report``.

    A failed ``galaxies`` step stops new runs (the ones in flight finish). ``done`` is told of each
    finished run (a progress bar).
    """
    stop = False
    for _phase, group in groupby(runs, key=lambda spec: spec.phase):
        if stop:
            break
        todo = iter(group)
        inflight: dict[Future, RunSpec] = {}
        while True:
            while not stop and len(inflight) < workers and (spec := next(todo, None)):
                inflight[pool.submit(spec)] = spec
            if not inflight:
                break
            finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
            for future in finished:
                spec = inflight.pop(future)
                stop = report.absorb(spec.label, _outcome(future), log) or stop
                done(spec)
