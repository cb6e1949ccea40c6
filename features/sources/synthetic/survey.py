"""The ``demo`` source: a synthetic Galaxy10-like survey that knows its own truth.

Row ``i`` of ``SyntheticSurvey(n, seed, size)`` is a Galaxy10 class drawn by a fixed permutation of
``n`` labels whose counts follow :data:`~features.sources.classes.GALAXY10_COUNTS` (largest-remainder
rounding), and is rendered from ``SeedSequence([seed, i])`` alone, so any row range renders
byte-identically on its own, serially or over a process pool.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np
import pyarrow as pa

from features.errors import InputError
from features.parallel import process_pool
from features.sources.base import GalaxyBatch, Source
from features.sources.classes import GALAXY10_CLASSES, GALAXY10_COUNTS
from features.sources.synthetic.galaxy import TRUTH_SCHEMA, RenderedGalaxy, render_galaxy
from features.sources.synthetic.observe import DEFAULT_STRETCH, FieldObject
from features.sources.synthetic.params import GalaxyParams, draw_params
from features.sources.synthetic.render import BANDS, PXSCALE

__all__ = ["DEFAULT_N", "SyntheticSurvey", "class_counts", "default_workers"]

DEFAULT_N = 600
"""Default survey size of ``astrovision demo``."""

MIN_POOL_ROWS = 32
"""Fewer rows than this render in-process: starting worker processes would cost more than it saves."""

_CACHE_ROWS = 20_000  # truth records (with field objects) kept after rendering, for truth_table / catalogue


def class_counts(n: int, weights: tuple[int, ...] = GALAXY10_COUNTS) -> np.ndarray:
    """Galaxies per class for a survey of ``n``: proportional to ``weights``, largest-remainder rounding."""
    w = np.asarray(weights, dtype=np.float64)
    exact = n * w / w.sum()
    counts = np.floor(exact).astype(np.int64)
    rest = n - int(counts.sum())
    order = np.lexsort((np.arange(len(w)), -(exact - counts)))  # biggest remainder first, ties by label
    counts[order[:rest]] += 1
    return counts


def default_workers() -> int:
    """Worker processes for rendering: the cores this process may use."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return max(os.cpu_count() or 1, 1)


def _render_chunk(seed: int, size: int, rows: list[int], labels: list[int]) -> list[tuple[int, np.ndarray, dict, list]]:
    """Worker entry point: render rows, return what a batch needs (not the float images)."""
    out = []
    for row, label in zip(rows, labels):
        g = render_galaxy(seed, row, label, size)
        out.append((row, g.rgb, g.truth, g.field))
    return out


class SyntheticSurvey(Source):
    """A synthetic Galaxy10 DECaLS-like survey: ``n`` galaxies of the ten classes with ground truth.

    Parameters
    ----------
    n : int
        Number of galaxies.
    seed : int
        Survey seed (non-negative). Labels depend on ``(n, seed)``; galaxy ``i`` on ``(seed, i)``.
    size : int
        Stamp size in pixels (256 like Galaxy10; smaller stamps crop the same galaxies, for tests).

    Notes
    -----
    Images are ``rgb_composite`` uint8 ``(size, size, 3)`` with bands ``z,r,g`` at 0.262 arcsec/pixel;
    each batch's ``stretch`` inverts them to nanomaggies (:func:`invert_stretch`). The truth of every
    rendered row is kept (up to 20,000 rows) so :meth:`truth_table` and the photometry catalogue reuse it
    instead of rendering again.
    """

    kind = "demo"
    default_shard_size = 200

    def __init__(self, n: int = DEFAULT_N, seed: int = 0, size: int = 256) -> None:
        for what, value, lo in (("n", n, 1), ("seed", seed, 0), ("size", size, 32)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
                raise InputError(f"demo survey: {what} must be an integer >= {lo}; got {value!r}")
        self.n = int(n)
        self.seed = int(seed)
        self.size = int(size)
        self._labels: np.ndarray | None = None
        self._truth: OrderedDict[int, tuple[dict[str, Any], list[FieldObject]]] = OrderedDict()

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"SyntheticSurvey(n={self.n}, seed={self.seed}, size={self.size})"

    def describe(self) -> dict[str, Any]:
        """Parameters that recreate this survey."""
        return {"n": self.n, "seed": self.seed, "size": self.size}

    @property
    def labels(self) -> np.ndarray:
        """Class label of every row (int64), a seeded permutation of :func:`class_counts`."""
        if self._labels is None:
            counts = class_counts(self.n)
            base = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.n, 0x6A1A]))
            self._labels = base[rng.permutation(self.n)]
        return self._labels

    def params(self, row: int) -> GalaxyParams:
        """The drawn parameters of one row (cheap: no rendering)."""
        from features.sources.synthetic.galaxy import rng_streams

        self._check_range(row, row + 1)
        return draw_params(int(self.labels[row]), rng_streams(self.seed, row)[0])

    def render(self, row: int) -> RenderedGalaxy:
        """Render one row with its float images (observed flux, noiseless target) and truth."""
        self._check_range(row, row + 1)
        g = render_galaxy(self.seed, row, int(self.labels[row]), self.size)
        self._remember(row, g.truth, g.field)
        return g

    # --- batches ---------------------------------------------------------------------------------

    def iter_batches(self, start: int = 0, stop: int | None = None, batch_size: int = 64,
                     workers: int | None = None) -> Iterator[GalaxyBatch]:
        """Render rows ``[start, stop)`` and yield them in batches of at most ``batch_size``.

        Parameters
        ----------
        start, stop : int
            Row range (``stop`` defaults to ``n``).
        batch_size : int
        workers : int, optional
            Processes to render with (default: every usable core); 1 renders in this process.
        """
        stop = self.n if stop is None else stop
        self._check_range(start, stop)
        if batch_size < 1:
            raise InputError(f"demo survey: batch_size must be >= 1; got {batch_size}")
        windows = [(s, min(s + batch_size, stop)) for s in range(start, stop, batch_size)]
        for (s, e), results in zip(windows, self._render_windows(windows, workers)):
            yield self._batch(s, e, results)

    def iter_runs(self, runs: Sequence[tuple[int, int]], batch_size: int = 64,
                  workers: int | None = None) -> Iterator[GalaxyBatch]:
        """Render several ``[start, stop)`` row ranges (a sky shard's rows) with one pool, in order."""
        for s, e in runs:
            self._check_range(s, e)
        windows = [(a, min(a + batch_size, e)) for s, e in runs for a in range(s, e, batch_size)]
        for (a, b), results in zip(windows, self._render_windows(windows, workers)):
            yield self._batch(a, b, results)

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ra, dec)`` of every row from its drawn parameters (no rendering)."""
        params = [self.params(row) for row in range(self.n)]
        return (np.array([p.ra for p in params], dtype=np.float64),
                np.array([p.dec for p in params], dtype=np.float64))

    def _render_windows(self, windows: list[tuple[int, int]], workers: int | None) -> Iterator[list]:
        """Render row windows in order; yields ``[(row, rgb, truth, field), ...]`` per window."""
        total = sum(e - s for s, e in windows)
        workers = default_workers() if workers is None else int(workers)
        if workers <= 1 or total < MIN_POOL_ROWS:
            for s, e in windows:
                rows = list(range(s, e))
                yield _render_chunk(self.seed, self.size, rows, [int(x) for x in self.labels[s:e]])
            return
        # forkserver (safe beside threads, unlike fork) with the renderer preloaded, so workers start fast
        pool = process_pool(workers, preload=["features.sources.synthetic.galaxy"], one_thread=False)
        try:
            pending: deque[list[Future]] = deque()
            it = iter(windows)

            def submit(window: tuple[int, int]) -> list[Future]:
                s, e = window
                chunk = max(1, math.ceil((e - s) / (2 * workers)))
                return [pool.submit(_render_chunk, self.seed, self.size, list(range(a, min(a + chunk, e))),
                                    [int(x) for x in self.labels[a:min(a + chunk, e)]])
                        for a in range(s, e, chunk)]

            for window in it:
                pending.append(submit(window))
                if len(pending) >= max(2, workers):
                    break
            while pending:
                futures = pending.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(submit(nxt))
                yield [r for f in futures for r in f.result()]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _batch(self, start: int, stop: int, results: list) -> GalaxyBatch:
        truths = []
        for row, _, truth, field in results:
            self._remember(row, truth, field)
            truths.append(truth)
        labels = self.labels[start:stop].copy()
        return GalaxyBatch(
            source=self.name,
            native_ids=[f"{i:06d}" for i in range(start, stop)],
            row_index=np.arange(start, stop, dtype=np.int64),
            ra=np.array([t["ra"] for t in truths], dtype=np.float64),
            dec=np.array([t["dec"] for t in truths], dtype=np.float64),
            redshift=np.array([t["redshift"] for t in truths], dtype=np.float64),
            pxscale=np.full(stop - start, PXSCALE, dtype=np.float64),
            labels=labels,
            label_names=[GALAXY10_CLASSES[int(k)] for k in labels],
            images=[r[1] for r in results],
            image_kind="rgb_composite",
            bands=",".join(BANDS),
            extra=[],
            stretch=dict(DEFAULT_STRETCH),
        )

    # --- truth -----------------------------------------------------------------------------------

    def truth_records(self, start: int = 0, stop: int | None = None,
                      workers: int | None = None) -> list[tuple[dict[str, Any], list[FieldObject]]]:
        """Truth record and neighbours of rows ``[start, stop)``, rendering only rows not seen yet."""
        stop = self.n if stop is None else stop
        self._check_range(start, stop)
        missing = [i for i in range(start, stop) if i not in self._truth]
        # render maximal runs of missing rows
        runs: list[tuple[int, int]] = []
        for i in missing:
            if runs and runs[-1][1] == i:
                runs[-1] = (runs[-1][0], i + 1)
            else:
                runs.append((i, i + 1))
        out: dict[int, tuple[dict[str, Any], list[FieldObject]]] = {}
        for results in self._render_windows(runs, workers):
            for row, _, truth, field in results:
                self._remember(row, truth, field)
                out[row] = (truth, field)
        return [out[i] if i in out else self._truth[i] for i in range(start, stop)]

    def truth_table(self, start: int = 0, stop: int | None = None, workers: int | None = None) -> pa.Table:
        """The ``truth`` rows of ``[start, stop)`` (columns exactly :data:`TRUTH_SCHEMA`), keyed by this
        survey's galaxy ids (``<name>:<row:06d>``)."""
        records = [t for t, _ in self.truth_records(start, stop, workers)]
        ids = pa.array([f"{self.name}:{row:06d}" for row in range(start, start + len(records))], pa.string())
        table = pa.Table.from_pylist(records, schema=TRUTH_SCHEMA)
        return table.set_column(table.schema.get_field_index("galaxy_id"), TRUTH_SCHEMA.field("galaxy_id"), ids)

    def _remember(self, row: int, truth: dict[str, Any], field: list[FieldObject]) -> None:
        self._truth[row] = (truth, field)
        self._truth.move_to_end(row)
        while len(self._truth) > _CACHE_ROWS:
            self._truth.popitem(last=False)

    def _check_range(self, start: int, stop: int) -> None:
        if not (0 <= start <= stop <= self.n):
            raise InputError(f"demo survey: rows [{start}, {stop}) are outside [0, {self.n})")
