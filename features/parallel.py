"""A step's share of the cores, and an ordered process pool sized to it.

A step of a Dagster run gets a thread budget from the executor that starts it
(:func:`dagster_project.executors.step_threads` sets ``OMP_NUM_THREADS`` to ``cores // workers`` for
parallel shard runs; in process, with the default ``--workers 1``, it is unset and the step has every
core). :func:`step_cores` reads that budget; :func:`ordered_pool` turns it into processes for work
that is single-threaded in Python (Otsu per galaxy, seeded UMAP fits), with results in input order, so
the parallel path returns exactly what the serial one does.

No Dagster here: the science and stage code call these with plain functions.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["POOL_MIN_ROWS", "MapFn", "exit_with_owner", "init_worker", "ordered_pool", "pool_workers", "process_pool",
           "step_cores", "thread_map", "warm_imports"]

T = TypeVar("T")
R = TypeVar("R")
MapFn = Callable[[Callable[[Any], Any], Iterable[Any]], list[Any]]
"""``map(fn, items) -> [fn(item) for item in items]``, in input order."""

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def step_cores() -> int:
    """The cores this step may use: its CPU affinity, at most ``$OMP_NUM_THREADS`` when that is a positive
    integer (the share a parallel executor gave the step; anything else in it is ignored); at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    try:
        limit = int(os.environ.get("OMP_NUM_THREADS", "").strip())
    except ValueError:
        limit = 0
    return max(1, min(n, limit) if limit > 0 else n)


POOL_MIN_ROWS = 5_000
"""Below this many galaxies a step whose jobs are a few short fits keeps them in its own process.

Measured on the default demo (600 galaxies, 2 cores, 2026-12-07, ``docs/benchmarks.md``): the fusion
ablation's fits in a pool took 14.1 s instead of 6.6 and the analysis' estimates 12.8 s instead of 9.9,
because each worker imports torch / scikit-learn first. At 1,000 galaxies each step left ~7 idle
core-seconds, about a worker's start; the threshold between that and Galaxy10's 17,736 is not measured.
"""


def pool_workers(workers: int | None, n_rows: int, min_rows: int = POOL_MIN_ROWS) -> int | None:
    """The ``workers`` for :func:`ordered_pool` of a step over ``n_rows`` galaxies: as given when given;
    otherwise 1 (no pool) below ``min_rows`` and the step's cores (``None``) from there."""
    if workers is not None:
        return workers
    return 1 if n_rows < min_rows else None


def _serial_map(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    return [fn(item) for item in items]


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed and not yet reaped, does not)."""
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _exit_with(owner: int, every_s: float) -> None:
    while True:
        time.sleep(every_s)
        if not _alive(owner):
            os._exit(1)


def exit_with_owner(owner: int, every_s: float = 1.0) -> None:
    """End this pool worker once ``owner`` (the process that made the pool) is gone.

    When the owner dies without shutting its pool down (``kill``, SIGTERM's default action, the OOM
    killer), a worker of a ``forkserver`` pool would wait on its task queue forever: it holds both ends
    of that pipe, so it never sees end-of-file, and the fork server lives as long as its workers. A daemon
    thread checks every ``every_s`` seconds and ends the worker once the owner is gone (a zombie counts
    as gone). A pool's ``initializer``, with ``initargs=(os.getpid(),)``.
    """
    threading.Thread(target=_exit_with, args=(int(owner), every_s), daemon=True, name="exit-with-owner").start()


def init_worker(owner: int | None = None, every_s: float = 1.0) -> None:
    """Worker set-up of a process pool: default SIGTERM, one BLAS/OpenMP thread (the pool is the parallelism),
    and an exit when the pool's owner is gone.

    A pool stops its workers with SIGTERM. A process started in the background from a shell can inherit
    SIGTERM as ignored, and its workers would then outlive the pool (a hung worker never exits and the
    join waits forever), so the default action is restored here.

    ``owner``: the process that made the pool (pass ``os.getpid()`` in ``initargs``); the worker ends
    when it is gone (:func:`exit_with_owner`). Used by :func:`ordered_pool` and the morphometrics pool
    (:mod:`features.morphometrics.batch`).
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if owner is not None:
        exit_with_owner(owner, every_s)
    for var in _THREAD_VARS:
        os.environ[var] = "1"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass


def process_pool(workers: int, *, preload: Sequence[str] = (), one_thread: bool = True) -> ProcessPoolExecutor:
    """A :class:`concurrent.futures.ProcessPoolExecutor` of ``workers`` ``forkserver`` processes (``spawn``
    where there is none; never ``fork``: the caller may hold torch's and Dagster's threads) whose workers
    end when this process is gone (:func:`exit_with_owner`) and, with ``one_thread``, run one BLAS thread
    each with the default SIGTERM (:func:`init_worker`). ``preload`` names modules the fork server imports
    before it forks, when this pool is the first to start it in the process (later pools share it)."""
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    if method == "forkserver" and preload:
        ctx.set_forkserver_preload(list(preload))
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker if one_thread else exit_with_owner,
                               initargs=(os.getpid(),))


@contextmanager
def ordered_pool(workers: int | None = None, *, preload: Sequence[str] = (),
                 min_items: int = 2) -> Iterator[MapFn]:
    """A ``map(fn, items)`` over ``workers`` processes (default :func:`step_cores`), results in input order.

    With one worker the map is a plain loop in this process (no pool is started). Otherwise a
    :class:`concurrent.futures.ProcessPoolExecutor` of ``forkserver`` processes (``spawn`` where there is
    none; never ``fork``: the caller may hold torch's and Dagster's threads), each with one BLAS thread,
    started at the first map with no more processes than that map has items. A worker that dies (the
    OOM killer, a crash in compiled code) fails the map with ``BrokenProcessPool`` instead of leaving it
    waiting for the lost items. ``preload`` names modules the fork server imports before it forks, when
    this pool is the first to start it in the process (later pools share the running server). ``fn`` must be
    a module-level function and items and results picklable. A map of fewer than ``min_items`` items runs
    in this process too. The pool lives for the ``with`` block, so one pool serves many maps; it is shut
    down on exit, with its queued work cancelled on an error.

    Parameters
    ----------
    workers : int, optional
        Processes at most; None: :func:`step_cores`. Values below 1 count as 1.
    preload : sequence of str
        Modules the fork server imports before it forks the workers.
    min_items : int
        Smaller maps are not worth the round trip to the workers.

    Yields
    ------
    callable
        ``map(fn, items) -> list``.
    """
    n = step_cores() if workers is None else max(1, int(workers))
    if n <= 1:
        yield _serial_map
        return
    pool: ProcessPoolExecutor | None = None

    def pooled(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        nonlocal pool
        items = list(items)
        if len(items) < min_items:
            return _serial_map(fn, items)
        if pool is None:
            pool = process_pool(min(n, len(items)), preload=preload)
        chunksize = max(1, len(items) // (4 * n))
        return list(pool.map(fn, items, chunksize=chunksize))

    try:
        yield pooled
    except BaseException:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            pool = None
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


def thread_map(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> list[R]:
    """``[fn(item) for item in items]`` on ``workers`` threads (default :func:`step_cores`), in input order.

    For work whose time is in code that releases the GIL, where a process pool's start costs more than
    the work (:data:`POOL_MIN_ROWS`): the analysis' seeded Spearman bootstraps (numpy's sorts), Pillow's
    decoding and resizing, galaxy stamps. ``fn`` must not depend on global random state; a caller whose
    jobs call BLAS holds it to one thread around the map (``threadpoolctl.threadpool_limits(1)``), as a
    pool's workers do. With one worker (or one item) the map is a plain loop. The first exception is
    raised.
    """
    items = list(items)
    n = min(step_cores() if workers is None else max(1, int(workers)), len(items))
    if n <= 1:
        return _serial_map(fn, items)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(fn, items))


def _import_all(modules: Sequence[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # the step that needs it imports it again and reports the error there
            pass


def warm_imports(modules: Sequence[str], *, first: Sequence[str] = ()) -> threading.Thread | None:
    """Import ``modules`` in a daemon thread now, so a later step finds them loaded.

    A command that runs its steps in this process imports each library where a step first needs it:
    torch, torchvision and timm cost ~6 CPU-seconds on one core at the first training step, with the
    other core idle. Started while earlier steps keep every core busy (a shard's renderer and
    morphometrics pools), the import uses CPU that is shared out instead of a core alone. A step that
    needs a module first waits on Python's import lock for it and never sees it half imported.

    Two threads that enter an import cycle from opposite ends can see a partly initialized module, so
    no module should be imported by both threads at once: ``first`` names the modules that the steps
    running meanwhile import too (Pillow, urllib3 for the torch stack and the shard steps); they are
    imported here, in the calling thread, before the thread starts. ``tests/test_warm_imports.py``
    checks that the rest of what is warmed shares nothing with the shard steps' imports beyond numpy
    and the standard library.

    Returns the thread (None when every module is already loaded). An import that fails here is
    ignored: the step that needs the module imports it again and reports the error.
    """
    todo = [m for m in modules if m not in sys.modules]
    if not todo:
        return None
    _import_all(first)
    thread = threading.Thread(target=_import_all, args=(todo,), daemon=True, name="warm-imports")
    thread.start()
    return thread
