"""Measure many galaxies in worker processes, under a time limit, without ever stopping the batch.

Each task is one galaxy (all its bands). Workers come from a ``forkserver`` (never a fork of a parent that
holds Lance/Arrow threads), each limited to one BLAS/OpenMP thread, so ``workers`` is the number of cores
used. Two guards keep a bad galaxy from stalling a shard:

* inside the worker, :func:`~features.morphometrics.measure.time_limit` (``SIGALRM``) stops a
  measurement after ``time_limit_s`` and returns a ``MORPH_TIMED_OUT`` record;
* in the parent, a watchdog waits at most ``time_limit_s * n_bands + grace`` for the oldest unfinished
  task. A worker stuck in C code (signals only run between Python bytecodes) or killed by the OS is
  caught this way: the pool is terminated, that galaxy gets ``MORPH_TIMED_OUT`` records, and the tasks
  that had not finished are run again in a fresh pool.

Called from a thread other than the main one (a Dask worker runs each task in a thread beside its event
loop), even ``workers=1`` measures in a worker process: the time limit needs a main thread, and measuring in
the task thread ran statmorph 2-4x slower, sharing the GIL with the Dask worker.

At most ``4 * workers`` tasks are in flight at once, so a shard's images need not all be in worker
queues together, and the inputs may be a lazy iterable.

Library warnings (photutils' deblending notice, statmorph's) raised while a galaxy is measured are
caught, not printed: each galaxy's first record carries them under :data:`WARNINGS_KEY`, and
:func:`tally_warnings` counts them for one summary line per shard.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import threading
import warnings
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from features.errors import InputError
from features.flags import Flag
from features.morphometrics.inputs import LUMINANCE, parse_bands
from features.morphometrics.measure import MorphOptions, _with_arcsec, empty_record, measure_image
from features.parallel import init_worker

__all__ = ["WARNINGS_KEY", "MorphInput", "check_bands", "measure_batch", "measure_one", "records_to_table",
           "summarise_warnings", "tally_warnings"]

WARNINGS_KEY = "library_warnings"
"""Record key of the warnings caught while measuring a galaxy (not a table column)."""

_GRACE_S = 60.0
"""Extra seconds the parent watchdog allows beyond the per-measurement limits (worker start-up)."""


@dataclass(frozen=True)
class MorphInput:
    """One galaxy to measure.

    Attributes
    ----------
    galaxy_id : str
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)``.
    image_kind : str
        ``rgb_composite`` or ``flux``.
    bands : str or None
        Band of each channel, e.g. ``"z,r,g"``.
    pxscale : float or None
        Arcsec per pixel.
    stretch : dict or None
        The composite's stretch when known (it is inverted).
    psf : numpy.ndarray or None
        PSF image for the Sersic fit.
    """

    galaxy_id: str
    image: np.ndarray
    image_kind: str = "rgb_composite"
    bands: str | None = None
    pxscale: float | None = None
    stretch: dict[str, Any] | None = None
    psf: np.ndarray | None = None


def check_bands(item: MorphInput, bands: Sequence[str]) -> None:
    """Raise :class:`~features.errors.InputError` naming the galaxy if a band is not in its image."""
    shape = np.shape(item.image)
    if len(shape) not in (2, 3):
        raise InputError(f"galaxy {item.galaxy_id}: image of shape {shape} is not (H, W[, C])")
    try:
        names = parse_bands(item.bands, 1 if len(shape) == 2 else shape[2])
    except InputError as exc:
        raise InputError(f"galaxy {item.galaxy_id}: {exc}") from None
    missing = [b for b in bands if b != LUMINANCE and b not in names]
    if missing:
        raise InputError(
            f"galaxy {item.galaxy_id}: band(s) {missing} not in its image bands {names} (use one of them or "
            f"{LUMINANCE!r})"
        )


def _warning_text(w: warnings.WarningMessage) -> str:
    """One warning as ``"Category: first line"`` with numbers as ``N`` (so per-source variants count as one)."""
    first = str(w.message).strip().splitlines()[0] if str(w.message).strip() else ""
    return f"{w.category.__name__}: {re.sub(r'[0-9]+', 'N', first)[:160]}"


def measure_one(item: MorphInput, bands: Sequence[str], options: MorphOptions) -> list[dict[str, Any]]:
    """Records of one galaxy, one per band (the unit of work of :func:`measure_batch`).

    Warnings raised meanwhile are caught; the first record lists them under :data:`WARNINGS_KEY`.
    """
    out = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for band in bands:
            rec = measure_image(item.image, image_kind=item.image_kind, bands=item.bands, band=band,
                                stretch=item.stretch, pxscale=item.pxscale, options=options, psf=item.psf)
            rec["galaxy_id"] = item.galaxy_id
            rec["pxscale"] = float(item.pxscale) if item.pxscale is not None else float("nan")
            out.append(rec)
    if out:
        out[0][WARNINGS_KEY] = [_warning_text(w) for w in caught]
    return out


def tally_warnings(records: Iterable[dict[str, Any]]) -> Counter[str]:
    """How often each library warning was raised over ``records`` (their :data:`WARNINGS_KEY` lists, removed)."""
    counts: Counter[str] = Counter()
    for rec in records:
        counts.update(rec.pop(WARNINGS_KEY, None) or ())
    return counts


def summarise_warnings(counts: Counter[str], galaxies: int, limit: int = 3) -> str:
    """One line: ``"412 library warnings over 100 galaxies: 400 x AstropyUserWarning: ...; 12 x ..."``."""
    if not counts:
        return f"no library warnings over {galaxies} galaxies"
    top = "; ".join(f"{n} x {text}" for text, n in counts.most_common(limit))
    more = f"; and {len(counts) - limit} other kind(s)" if len(counts) > limit else ""
    return f"{sum(counts.values())} library warning(s) over {galaxies} galaxies: {top}{more}"


def _timed_out(item: MorphInput, bands: Sequence[str], why: str) -> list[dict[str, Any]]:
    out = []
    for band in bands:
        rec = _with_arcsec(empty_record(), item.pxscale)
        rec.update(galaxy_id=item.galaxy_id, band=band, image_kind=item.image_kind, method="unknown",
                   pxscale=float(item.pxscale) if item.pxscale is not None else float("nan"),
                   flags=int(Flag.MORPH_TIMED_OUT), error=why)
        out.append(rec)
    return out


def _worker_task(args: tuple[MorphInput, tuple[str, ...], MorphOptions]) -> list[dict[str, Any]]:
    item, bands, options = args
    return measure_one(item, bands, options)


def _serial(items: Iterable[MorphInput], bands: tuple[str, ...], options: MorphOptions,
            progress: Callable[[int], None] | None) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    for index, item in enumerate(items):
        yield index, measure_one(item, bands, options)
        if progress:
            progress(1)


class _Feeder:
    """Inputs in order: galaxies to re-run first, then the rest of the (possibly lazy) iterable."""

    def __init__(self, items: Iterable[MorphInput]) -> None:
        self._source = enumerate(items)
        self.retry: deque[tuple[int, MorphInput]] = deque()

    def next(self) -> tuple[int, MorphInput] | None:
        if self.retry:
            return self.retry.popleft()
        return next(self._source, None)


def _pooled(items: Iterable[MorphInput], bands: tuple[str, ...], options: MorphOptions, workers: int,
            progress: Callable[[int], None] | None, start_method: str,
            hard_limit: float | None) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload(["features.morphometrics"])
    feeder = _Feeder(items)
    while True:
        stalled = False
        with ctx.Pool(workers, initializer=init_worker, initargs=(os.getpid(),)) as pool:
            inflight: deque[tuple[tuple[int, MorphInput], Any]] = deque()
            while True:
                while len(inflight) < 4 * workers and (task := feeder.next()) is not None:
                    inflight.append((task, pool.apply_async(_worker_task, ((task[1], bands, options),))))
                if not inflight:
                    break
                (index, item), res = inflight.popleft()
                try:
                    records = res.get(timeout=hard_limit)
                except mp.TimeoutError:
                    records = _timed_out(item, bands, f"no result within {hard_limit:g} s (worker hung or died)")
                    stalled = True
                yield index, records
                if progress:
                    progress(1)
                if stalled:  # keep what finished, re-run the rest in a fresh pool
                    for other, other_res in inflight:
                        if other_res.ready() and other_res.successful():
                            yield other[0], other_res.get()
                            if progress:
                                progress(1)
                        else:
                            feeder.retry.append(other)
                    break
            if not stalled:
                pool.close()
                pool.join()
                return
            pool.terminate()


def measure_batch(
    items: Iterable[MorphInput],
    *,
    bands: Sequence[str] = ("r",),
    options: MorphOptions | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    start_method: str = "forkserver",
    hard_timeout_s: float | None = None,
) -> list[dict[str, Any]]:
    """Measure every galaxy in every band; one record per (galaxy, band), in input order.

    Parameters
    ----------
    items : iterable of MorphInput
        May be lazy (e.g. images read chunk by chunk); a sequence is checked for bands up front.
    bands : sequence of str
        Bands to measure (names from ``images.bands``, or ``"luminance"``).
    options : MorphOptions, optional
    workers : int, optional
        Worker processes; None uses every core (``os.cpu_count()``); 0 or 1 measures in this process
        when called from its main thread, and in one worker process otherwise (a Dask worker's task
        thread, any thread: there the time limit could not be kept and statmorph would share the GIL
        with the caller's event loop).
    progress : callable, optional
        Called with the number of galaxies just finished (e.g. ``tqdm.update``).
    start_method : str
        multiprocessing start method: ``forkserver`` (default; workers fork from a clean server process
        that has imported this package once, so a restarted pool is ready at once) or ``spawn``.
    hard_timeout_s : float, optional
        The parent watchdog's limit for one galaxy; default ``time_limit_s * len(bands) + 60`` (none
        when ``time_limit_s`` is 0).

    Returns
    -------
    list of dict
        Records as described in :mod:`features.morphometrics.measure`, plus ``galaxy_id`` and
        ``pxscale``. A galaxy that fails, hangs or is blank gives NaN values with flags; the batch
        always finishes.

    Raises
    ------
    InputError
        Before any work, if a band is not in some galaxy's image (sequences only) or ``bands`` is empty.
    """
    bands = tuple(bands)
    if not bands:
        raise InputError("no bands to measure")
    options = options or MorphOptions()
    if isinstance(items, Sequence):
        for item in items:
            check_bands(item, bands)
    n_workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if isinstance(items, Sequence):
        n_workers = min(n_workers, max(1, len(items)))
    if n_workers <= 1 and threading.current_thread() is threading.main_thread():
        chunks = _serial(items, bands, options, progress)
    else:
        if hard_timeout_s is None and options.time_limit_s > 0:
            hard_timeout_s = options.time_limit_s * len(bands) + _GRACE_S
        chunks = _pooled(items, bands, options, max(1, n_workers), progress, start_method, hard_timeout_s)
    return [rec for _, chunk in sorted(chunks, key=lambda c: c[0]) for rec in chunk]


def records_to_table(records: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Records as an Arrow table with ``schema``'s columns (extra keys dropped, missing ones null)."""
    columns = {}
    for f in schema:
        columns[f.name] = pa.array([r.get(f.name) for r in records], type=f.type)
    return pa.Table.from_pydict(columns, schema=schema)
