"""Run named asset jobs in process for the CLI: every shard's assets, then the unpartitioned ones.

The runs are ordinary Dagster runs of the jobs in :mod:`dagster_project.jobs`, recorded in the instance
under the warehouse root, so ``astrovision ui`` lists them by job name (with lineage, metadata and
checks) and any asset can be re-materialized there. Results are read through Dagster's public result
API (:class:`dagster.ExecuteInProcessResult`).

Two guards make the instance safe to share between CLI processes:

- :func:`instance_for` creates (and migrates) the instance's SQLite storage under a file lock, so
  processes first using a fresh warehouse at the same time do not race on its schema;
- :func:`mark_orphaned_runs` marks failed the runs whose process died without reporting (``kill -9``,
  a crash, a power cut): each CLI run is tagged with its host, process id and the process's start
  time, and the next CLI run of any command finds those still open although their process is gone.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.execution.execution_result import ExecutionResult
from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from dagster_project.executors import (
    Execution,
    dask_cluster,
    execution_run_config,
    reconstructable_job,
    split_cores_config,
    step_threads,
)
from dagster_project.jobs import job_for_groups
from dagster_project.partitions import SHARDS
from features.errors import InputError
from warehouse import Warehouse, WarehouseError

__all__ = [
    "HOST_TAG",
    "PID_START_TAG",
    "PID_TAG",
    "PipelineReport",
    "add_shards",
    "instance_for",
    "mark_orphaned_runs",
    "run_pipeline",
]

PID_TAG = "astrovision/pid"
"""Run tag: the id of the process that executes the run in process."""

HOST_TAG = "astrovision/host"
"""Run tag: the host of that process (only this host's runs are judged orphaned here)."""

PID_START_TAG = "astrovision/pid_start"
"""Run tag: when that process started (Linux clock ticks since boot), so a reused id is not taken for it."""

LOCK_TIMEOUT_S = 120.0
"""How long a process waits for another one creating or migrating the instance."""

_OPEN_STATUSES = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]

_QUIET_LOGGERS = {"console": {"config": {"log_level": "CRITICAL"}}}
"""Dagster's console logger stays quiet: the runner reports failures itself, one line each."""


def _root_cause(err) -> str:
    """The first error below Dagster's wrappers ("OfflineError: ..."), in one line.

    Not the innermost one: the project's own errors carry the message meant for the user and chain the
    low-level exception (a DNS failure, an h5py error) beneath them.
    """
    while err is not None and (err.cls_name or "").startswith("Dagster") and err.cause is not None:
        err = err.cause
    if err is None:
        return "failed"
    text = (err.message or "").strip()
    head, sep, rest = text.partition(f"{err.cls_name}: ")
    if sep and " " not in head:  # "models.errors.LabelError: no galaxy ..." -> "no galaxy ..."
        text = rest
    lines = text.strip().splitlines()
    return lines[-1] if lines else "failed"


def _error_types(err) -> tuple[str, ...]:
    """The class names along an error's chain of causes, outermost first."""
    names: list[str] = []
    while err is not None:
        names.append(err.cls_name or "")
        err = err.cause
    return tuple(names)


@contextmanager
def _instance_lock(home: Path) -> Iterator[None]:
    """Hold ``<home>/.instance.lock``; a one-line error naming it when it stays taken."""
    lock = FileLock(home / ".instance.lock", timeout=LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except Timeout:
        raise WarehouseError(
            f"the Dagster instance in {home} stayed locked by another process for {LOCK_TIMEOUT_S:g} s "
            f"({lock.lock_file}); try again when it is done"
        ) from None
    try:
        yield
    finally:
        lock.release()


def instance_for(wh: Warehouse) -> dg.DagsterInstance:
    """The persistent Dagster instance stored under the warehouse root (``<root>/dagster``).

    Safe under concurrency: the first process creates ``dagster.yaml`` and the SQLite storage (schema
    and migrations) while holding ``<root>/dagster/.instance.lock``; the others wait for it, then open
    the finished storage.
    """
    home = Path(wh.dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DAGSTER_HOME", str(home))
    with _instance_lock(home):
        yaml = home / "dagster.yaml"
        if not yaml.exists():
            yaml.write_text("telemetry:\n  enabled: false\n")
        return dg.DagsterInstance.from_config(str(home))


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> str:
    """When a process started, in clock ticks since boot (field 22 of its stat); empty without procfs."""
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else ""


def _process_gone(pid: int, started: str) -> bool:
    """Whether the process that tagged a run has ended: no such process, a zombie (killed, not yet
    reaped), or the id now belongs to a process started at another time (reused after a crash)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process holds the id now
        pass
    if not Path("/proc").is_dir():  # no procfs (macOS): the id is taken, so assume it is still running
        return False
    fields = _proc_stat(pid)
    if fields is None:  # exited just now
        return True
    return fields[0] == "Z" or (bool(started) and len(fields) > 19 and fields[19] != started)


def mark_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed this host's CLI runs that are still open although their process is gone.

    A run counts as a CLI run when it carries :data:`PID_TAG` and :data:`HOST_TAG` (every run started by
    :func:`run_pipeline` does); runs launched from the UI are Dagster's to watch. The check and the
    report happen under the instance lock, so two CLI processes never report the same run twice.

    Returns
    -------
    list of str
        The ids of the runs marked failed.
    """
    host = socket.gethostname()
    marked = []
    with _instance_lock(Path(instance.root_directory)):
        for run in instance.get_runs(filters=dg.RunsFilter(statuses=_OPEN_STATUSES, tags={HOST_TAG: host})):
            pid = run.tags.get(PID_TAG, "")
            if pid.isdigit() and _process_gone(int(pid), run.tags.get(PID_START_TAG, "")):
                instance.report_run_failed(
                    run, message=f"marked failed by astrovision: its process {pid} on {host} is gone "
                                 "(killed or crashed before the run could finish)")
                marked.append(run.run_id)
    return marked


def add_shards(instance: dg.DagsterInstance, keys: Sequence[str]) -> None:
    """Register shard keys as dynamic partitions (existing keys are left alone)."""
    existing = set(instance.get_dynamic_partitions(SHARDS.name))
    new = [k for k in keys if k not in existing]
    if new:
        instance.add_dynamic_partitions(SHARDS.name, new)


@dataclass
class PipelineReport:
    """What the runs did: per-step success, each materialization's metadata, checks, run ids."""

    succeeded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """``"<step> (<label>)"`` -> the root cause in one line."""
    failure_types: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """The same keys -> the error's class names along its chain of causes."""
    skipped: list[str] = field(default_factory=list)
    metadata: dict[str, dict] = field(default_factory=dict)
    checks_failed: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    orphaned_runs: list[str] = field(default_factory=list)
    """Runs of dead processes found open and marked failed before these runs started."""

    @property
    def ok(self) -> bool:
        return not self.failed

    def user_error(self, kinds: tuple[type[BaseException], ...]) -> str | None:
        """The message of the first failed step whose error is one of ``kinds`` (or a subclass), if any.

        For commands whose bad input used to raise straight to the CLI (``train --label`` of a column
        nobody has): the CLI raises this message again, as one line with exit status 2.
        """
        names = set()
        todo = list(kinds)
        while todo:
            cls = todo.pop()
            names.add(cls.__name__)
            todo.extend(cls.__subclasses__())
        for step, types in self.failure_types.items():
            if names & set(types):
                return self.failed[step]
        return None


def project_defs() -> dg.Definitions:
    """:data:`dagster_project.definitions.defs` (imported on first use: it loads every asset module)."""
    from dagster_project.definitions import defs

    return defs


def _asset_defs(defs: dg.Definitions) -> list[dg.AssetsDefinition]:
    return [a for a in (defs.assets or []) if isinstance(a, dg.AssetsDefinition)]


def _selection(assets: list[dg.AssetsDefinition], groups: Sequence[str] | None,
               names: Sequence[str] | None) -> set[dg.AssetKey]:
    """The asset keys of ``groups`` (default all) and, if given, only those named; unknown ones: InputError."""
    unknown = sorted(g for g in set(groups or ()) if not dg.AssetSelection.groups(g).resolve(assets))
    if unknown:
        known = sorted({spec.group_name or "default" for a in assets for spec in a.specs})
        raise InputError(f"unknown Dagster group(s) {unknown}; known: {known}")
    selection = dg.AssetSelection.groups(*groups) if groups else dg.AssetSelection.all()
    if names:
        known = {k.to_user_string() for a in assets for k in a.keys}
        missing = sorted(set(names) - known)
        if missing:
            raise InputError(f"unknown asset(s) {missing}; known: {sorted(known)}")
        selection = selection & dg.AssetSelection.assets(*names)
    return set(selection.resolve(assets))


def _phases(assets: list[dg.AssetsDefinition], chosen: set[dg.AssetKey]) -> list[tuple[bool, list[dg.AssetKey]]]:
    """The chosen assets in run order: ``(partitioned, keys)`` phases, each after every phase it reads.

    Per-shard assets that read only other per-shard assets run first (one run per shard), then the
    unpartitioned ones; a per-shard asset that reads an unpartitioned one (``embeddings`` reads
    ``ssl_encoder``) runs in a later per-shard phase, and so on down the graph. A dependency outside
    the selection does not order anything (it is taken as already materialized).
    """
    partitioned = {k: a.partitions_def is not None for a in assets for k in a.keys}
    deps = {spec.key: {d.asset_key for d in spec.deps} for a in assets for spec in a.specs}
    phase: dict[dg.AssetKey, int] = {}

    def of(key: dg.AssetKey) -> int:  # even: per-shard phases, odd: unpartitioned ones
        if key not in phase:
            p = 0 if partitioned[key] else 1
            for d in deps.get(key, ()):
                if d in chosen and d in partitioned:
                    p = max(p, of(d) + (partitioned[d] != partitioned[key]))
            phase[key] = p
        return phase[key]

    ordered = [k for a in assets for k in a.keys if k in chosen]
    for key in ordered:
        of(key)
    return [(p % 2 == 0, [k for k in ordered if phase[k] == p]) for p in sorted(set(phase[k] for k in ordered))]


def _collect(result: ExecutionResult, report: PipelineReport, label: str) -> None:
    report.run_ids.append(result.run_id)
    for event in result.get_asset_materialization_events():
        key = event.asset_key.to_user_string()  # type: ignore[union-attr]
        name = f"{key}[{event.partition}]" if event.partition else key
        report.succeeded.append(name)
        report.metadata[name] = {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            report.checks_failed.append(f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name} ({label})")
    for event in result.get_step_failure_events():
        step = f"{event.step_key} ({label})"
        report.failed[step] = _root_cause(event.step_failure_data.error)
        report.failure_types[step] = _error_types(event.step_failure_data.error)
    report.skipped += [f"{event.step_key} ({label})" for event in result.get_step_skipped_events()]
    if not result.success and not result.get_step_failure_events():  # the executor failed, not a step
        failures = result.filter_events(lambda e: e.event_type == dg.DagsterEventType.PIPELINE_FAILURE)
        error = getattr(failures[0].event_specific_data, "error", None) if failures else None
        report.failed[f"run ({label})"] = _root_cause(error) if error else "the run failed before its steps"
        report.failure_types[f"run ({label})"] = _error_types(error)


def _report_new_failures(report: PipelineReport, before: set[str], log: Callable[[str], None]) -> bool:
    """Log the steps that failed since ``before``; True when a ``galaxies`` step is among them."""
    new = sorted(set(report.failed) - before)
    for step in new:
        log(f"FAILED {step}: {report.failed[step]}")
    return any(step.startswith("galaxies ") for step in new)


def _init_run_process() -> None:
    """Run-process set-up: default SIGTERM and SIGINT (a CLI started in the background from a shell has
    them ignored, and spawned children inherit that), so stopping the CLI's process group stops its runs."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _shard_run(root: str, execution: Execution, address: str | None, job_name: str, label: str,
               partition: str | None, keys: list[dg.AssetKey], config: dict[str, Any],
               tags: dict[str, str]) -> PipelineReport:
    """One Dagster run, in this (run) process: its steps in process, in step processes or on Dask.

    The run is tagged with this process's id, so :func:`mark_orphaned_runs` judges it by the process
    that executes it. Returns what :func:`_collect` read from the result.
    """
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return _shard_run_here(root, execution, address, job_name, label, partition, keys, config, tags)
    finally:  # idle between runs: a pool broken by a killed sibling terminates this one, quietly
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)


def _shard_run_here(root: str, execution: Execution, address: str | None, job_name: str, label: str,
                    partition: str | None, keys: list[dg.AssetKey], config: dict[str, Any],
                    tags: dict[str, str]) -> PipelineReport:
    defs = project_defs()
    logging.getLogger("dagster").setLevel(logging.CRITICAL)
    instance = instance_for(Warehouse.open(root))
    run_tags = {**tags, PID_TAG: str(os.getpid()), PID_START_TAG: _start_time(os.getpid())}
    if execution.in_process:
        result: ExecutionResult = defs.resolve_job_def(job_name).execute_in_process(
            run_config=config, instance=instance, partition_key=partition, asset_selection=keys,
            raise_on_error=False, tags=run_tags)
    else:
        run_config = {**config, **execution_run_config(execution, address)}
        if partition:
            run_tags["dagster/partition"] = partition
        result = dg.execute_job(reconstructable_job(execution.executor, job_name), instance=instance,
                                run_config=run_config, tags=run_tags, asset_selection=keys)
    report = PipelineReport()
    _collect(result, report, label)
    return report


def _merge(report: PipelineReport, part: PipelineReport) -> None:
    report.run_ids += part.run_ids
    report.succeeded += part.succeeded
    report.metadata.update(part.metadata)
    report.checks_failed += part.checks_failed
    report.failed.update(part.failed)
    report.failure_types.update(part.failure_types)
    report.skipped += part.skipped


def _run_concurrently(wh: Warehouse, execution: Execution, job_name: str,
                      steps: list[tuple[str, str | None, list[dg.AssetKey]]], config: dict[str, Any],
                      tags: dict[str, str], report: PipelineReport, log: Callable[[str], None], bar) -> None:
    """Phase by phase (:func:`_phases`): the shard runs ``execution.workers`` at a time, then the unpartitioned run.

    Each run executes in a run process of its own (as Dagster's default run launcher does, without its
    daemon and code server beside the CLI), its steps by the chosen executor. Not threads: Dagster's
    run set-up reconfigures Python logging and deadlocks against another run's logging in the same
    process. A failed ``galaxies`` step stops new shard runs (the ones in flight finish).
    """
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    config = split_cores_config(config, execution.workers, {k.to_user_string() for _, _, ks in steps for k in ks})
    with step_threads(execution.workers), dask_cluster(execution) as address, \
            ProcessPoolExecutor(max_workers=execution.workers, mp_context=mp.get_context("spawn"),
                                initializer=_init_run_process) as pool:

        def submit(label: str, partition: str | None, keys: list[dg.AssetKey]) -> Future:
            try:
                return pool.submit(_shard_run, str(wh.root), execution, address, job_name, label, partition,
                                   keys, config, tags)
            except BrokenProcessPool as exc:  # a run process died since the last result: this run fails too
                failed: Future = Future()
                failed.set_exception(exc)
                return failed

        def take(label: str, future: Future) -> bool:
            before = set(report.failed)
            try:
                _merge(report, future.result())
            except Exception as exc:  # the run process died (killed, out of memory) or could not start
                report.failed[f"run ({label})"] = f"its run process failed: {type(exc).__name__}: {exc}"
                report.failure_types[f"run ({label})"] = (type(exc).__name__,)
                bar.update(1)
                _report_new_failures(report, before, log)
                return True
            bar.update(1)
            bar.set_postfix_str(label)
            return _report_new_failures(report, before, log)

        # phase by phase (see _phases): a phase's shard runs N at a time, an unpartitioned run alone
        stop = False  # a failed galaxies step: nothing downstream can be computed
        for per_shard, group in itertools.groupby(steps, key=lambda step: step[1] is not None):
            phase = list(group)
            if stop:
                break
            if not per_shard:
                for label, partition, keys in phase:
                    stop = take(label, submit(label, partition, keys)) or stop
                continue
            todo = iter(phase)
            inflight: dict[Future, str] = {}
            while True:
                while not stop and len(inflight) < execution.workers and (item := next(todo, None)):
                    inflight[submit(*item)] = item[0]
                if not inflight:
                    break
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in done:
                    label = inflight.pop(future)
                    stop = take(label, future) or stop


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
    a per-shard asset reads an unpartitioned one, see :func:`_phases`).

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
        one at a time. With ``W`` workers the morphometrics pool of each shard gets ``cores // W``
        processes unless ``run_config`` sets its ``workers``.

    Raises
    ------
    features.errors.InputError
        Unknown group or asset name (nothing is run).
    """
    if defs is None:
        defs = project_defs()
    all_assets = _asset_defs(defs)
    chosen = _selection(all_assets, groups, assets)
    job_def = defs.resolve_job_def(job or job_for_groups(groups))
    instance = instance_for(wh)
    report = PipelineReport(orphaned_runs=mark_orphaned_runs(instance))
    for run_id in report.orphaned_runs:
        log(f"run {run_id} was left open by a process that is gone: marked failed")
    add_shards(instance, shards)
    loggers = {**_QUIET_LOGGERS, **({"messages": {"config": {}}} if asset_logs else {})}
    config: dict[str, Any] = {**(run_config or {}), "loggers": loggers}
    if "warehouse" in (defs.resources or {}):  # this warehouse, whatever $ASTROVISION_HOME says
        config["resources"] = {**config.get("resources", {}), "warehouse": {"config": {"root": str(wh.root)}}}
    tags = {"astrovision/trigger": "cli", PID_TAG: str(os.getpid()), PID_START_TAG: _start_time(os.getpid()),
            HOST_TAG: socket.gethostname()}
    logging.getLogger("dagster").setLevel(logging.CRITICAL)
    steps: list[tuple[str, str | None, list[dg.AssetKey]]] = []
    for i, (per_shard, keys) in enumerate(_phases(all_assets, chosen)):
        after = f" (phase {i + 1})" if i > 1 else ""
        if per_shard:
            steps += [(f"shard {s}{after}", s, keys) for s in shards]
        elif include_unpartitioned:
            steps.append((f"unpartitioned assets{after}", None, keys))
    execution = execution or Execution()
    if execution.workers > 1 or not execution.in_process:
        if defs is not project_defs():
            raise InputError("run_pipeline: other definitions than the project's run in process only "
                             "(run processes and Dask workers import dagster_project.definitions)")
        with tqdm(total=len(steps), desc=job_def.name, unit="run", disable=not progress) as bar:
            _run_concurrently(wh, execution, job_def.name, steps, config, tags, report, log, bar)
        return report
    bar = tqdm(steps, desc=job_def.name, unit="run", disable=not progress)
    for label, partition, keys in bar:
        bar.set_postfix_str(label)
        result = job_def.execute_in_process(
            run_config=config,
            instance=instance,
            partition_key=partition,
            asset_selection=keys,
            raise_on_error=False,
            tags=tags,
        )
        before = set(report.failed)
        _collect(result, report, label)
        for step in sorted(set(report.failed) - before):
            log(f"FAILED {step}: {report.failed[step]}")
        if any(step.startswith("galaxies ") for step in set(report.failed) - before):
            break  # without its galaxies nothing downstream can be computed
    bar.close()
    return report
