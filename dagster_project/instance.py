"""The Dagster instance under the warehouse root, shared safely by CLI processes.

Two guards:

- :func:`instance_for` creates (and migrates) the instance's SQLite storage under a file lock, so
  processes first using a fresh warehouse at the same time do not race on its schema;
- :func:`mark_orphaned_runs` marks failed the runs whose process died without reporting (``kill -9``,
  a crash, a power cut): each CLI run is tagged (:func:`process_tags`) with its host, process id and
  the process's start time, and the next CLI run of any command finds those still open although their
  process is gone (:func:`process_gone`, by :mod:`psutil`).

Dagster's own run monitoring does this for runs launched through a run launcher, but only with the
daemon running beside a code server; the CLI runs without either (``docs/architecture.md``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psutil
from filelock import FileLock, Timeout

from dagster_project.partitions import SHARDS
from warehouse import Warehouse, WarehouseError

__all__ = [
    "HOST_TAG",
    "LOCK_TIMEOUT_S",
    "PID_START_TAG",
    "PID_TAG",
    "add_shards",
    "instance_for",
    "mark_orphaned_runs",
    "process_gone",
    "process_start",
    "process_tags",
]

PID_TAG = "astrovision/pid"
"""Run tag: the id of the process that executes the run."""

HOST_TAG = "astrovision/host"
"""Run tag: the host of that process (only this host's runs are judged orphaned here)."""

PID_START_TAG = "astrovision/pid_start"
"""Run tag: when that process started (:func:`process_start`), so a reused id is not taken for it."""

LOCK_TIMEOUT_S = 120.0
"""How long a process waits for another one creating or migrating the instance."""

_OPEN_STATUSES = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


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
    with _instance_lock(home):
        yaml = home / "dagster.yaml"
        if not yaml.exists():
            yaml.write_text("telemetry:\n  enabled: false\n")
        return dg.DagsterInstance.from_config(str(home))


def process_start(pid: int) -> str:
    """When process ``pid`` started (seconds since the epoch, 2 decimals, as :mod:`psutil` reads it);
    empty when there is no such process or it cannot be read."""
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return ""


def process_tags(pid: int | None = None) -> dict[str, str]:
    """The tags that tie a run to the process executing it (default this one) on this host."""
    pid = os.getpid() if pid is None else pid
    return {PID_TAG: str(pid), PID_START_TAG: process_start(pid), HOST_TAG: socket.gethostname()}


def process_gone(pid: int, started: str) -> bool:
    """Whether the process that tagged a run has ended: no such process, a zombie (killed, not yet
    reaped), or the id now belongs to a process started at another time (reused after a crash).

    ``started`` is the run's :data:`PID_START_TAG` (empty: the id alone decides).
    """
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        return bool(started) and f"{proc.create_time():.2f}" != started
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:  # another user's process holds the id now: ours (same user) is gone,
        return bool(started)  # judged so when the run says when ours started


def mark_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed this host's CLI runs that are still open although their process is gone.

    A run counts as a CLI run when it carries :data:`PID_TAG` and :data:`HOST_TAG` (every run started by
    :func:`dagster_project.runner.run_pipeline` does); runs launched from the UI are Dagster's to watch.
    The check and the report happen under the instance lock, so two CLI processes never report the same
    run twice.

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
            if pid.isdigit() and process_gone(int(pid), run.tags.get(PID_START_TAG, "")):
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
