"""The route planner and the kNN kernel: which way a query is answered, and answering it.

Every route reads the table version's vectors from the session's cached, L2-normalised matrix
(:mod:`warehouse.search.matrix`), so a filter's allowed ids become row positions in it and every
distance returned is exact. :func:`plan_route` picks, from the table size, the allowed count and whether
an index exists: ``exact`` / ``exact_subset`` (numpy over all rows / over the gathered allowed rows),
``ann`` (the Lance IVF_HNSW_SQ index, :mod:`warehouse.search.index`), ``ann_prefilter`` (the index
restricted to the allowed Lance row ids) or ``ann_postfilter`` (over-fetch from the index, keep the
allowed). ANN candidates are re-ranked with exact distances. Rows appended after the index was built are
searched flat by Lance and merged. The thresholds come from ``benchmarks/bench_ann.py``
(``docs/benchmarks_embeddings.md``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from warehouse.errors import WarehouseError
from warehouse.search.matrix import Matrix, cosine_topk, dim_of, load_matrix
from warehouse.session import Snapshot, snapshot_of
from warehouse.store import TableStore

__all__ = [
    "DEFAULT_NPROBES",
    "DEFAULT_REFINE_FACTOR",
    "EXACT_SUBSET_MAX",
    "OVERFETCH",
    "POSTFILTER_MIN_FRACTION",
    "ROUTES",
    "SearchPlan",
    "index_cover",
    "knn",
    "knn_plan",
    "matrix",
    "plan_route",
]

EXACT_SUBSET_MAX = 20_000
"""With an ANN index, a ``where`` allowing at most this many galaxies is answered exactly over them."""

POSTFILTER_MIN_FRACTION = 0.05
"""With an ANN index, a ``where`` allowing at least this fraction is served by over-fetching and filtering."""

OVERFETCH = 1.5
"""ANN over-fetch + post-filter asks for ``OVERFETCH * refine_factor * k / selectivity`` candidates."""

DEFAULT_NPROBES = 8
"""IVF partitions probed per query (ANN only). At 1M x 384 (realistic vectors): recall@10 0.993, p50 2.9 ms (refine 5)."""

DEFAULT_REFINE_FACTOR = 5
"""ANN candidates re-ranked with exact distances: ``refine_factor * k``."""


def matrix(snap: Snapshot, table: str) -> Matrix:
    """The snapshot's version of a table's vectors, from the session's byte-bounded LRU (loaded on a miss)."""
    ds = snap.dataset(table)
    cached = snap.session.matrices.get(table)
    if cached is not None and cached.version == ds.version:
        return cached
    m = load_matrix(ds, cached)
    return snap.session.matrices.put(table, m, m.nbytes)


def index_cover(ds: Any) -> tuple[bool, int]:
    """Whether the dataset version has the vector index, and how many of its rows it does not cover."""
    segments = [ix for ix in ds.list_indices() if "vector" in (ix.get("fields") or [])]
    if not segments:
        return False, int(ds.count_rows())
    covered = set().union(*(set(ix.get("fragment_ids") or []) for ix in segments))  # base + delta segments
    return True, int(sum(f.count_rows() for f in ds.get_fragments() if f.fragment_id not in covered))


ROUTES = ("exact", "exact_subset", "ann", "ann_prefilter", "ann_postfilter")
"""Ways a query is answered; :func:`plan_route` picks one, :class:`SearchPlan` reports it."""


@dataclass(frozen=True)
class SearchPlan:
    """How a query was answered: the route, why, and how much it touched.

    Attributes
    ----------
    route : str
        One of :data:`ROUTES`: ``exact`` (numpy over every vector), ``exact_subset`` (numpy over the
        rows ``where`` allows, gathered from the cached matrix), ``ann`` (the index, candidates
        re-ranked exactly), ``ann_prefilter`` (the index searching only the allowed Lance row ids),
        ``ann_postfilter`` (the index over-fetching, the allowed kept, re-ranked exactly).
    rows : int
        Rows in the table version searched.
    allowed : int or None
        Rows the ``where`` allows (None: no ``where``).
    selectivity : float or None
        ``allowed / rows``.
    candidates : int
        Vectors whose exact distance was computed.
    indexed : bool
        The table version has an ANN index.
    unindexed_rows : int
        Rows the index does not cover (Lance searches them flat and merges them in).
    reason : str
        Why this route, in words.
    filter_ms, search_ms : float
        Time spent evaluating ``where`` (DuckDB, ids -> positions) and searching.
    filter_cached : bool
        The ``where``'s row positions came from the cache (same ``where``, same table versions).
    """

    route: str
    rows: int
    allowed: int | None
    selectivity: float | None
    candidates: int
    indexed: bool
    unindexed_rows: int
    reason: str
    filter_ms: float = 0.0
    search_ms: float = 0.0
    filter_cached: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON output, HTTP answers)."""
        return asdict(self)

    def describe(self) -> str:
        """One line, e.g. ``route exact_subset: 1,204 of 100,000 rows allowed (1.20 %) ...``."""
        sel = "" if self.allowed is None else (
            f": {self.allowed:,} of {self.rows:,} rows allowed ({100 * (self.selectivity or 0):.2f} %)")
        cache = ", cached" if self.filter_cached else ""
        return (f"route {self.route}{sel}, {self.candidates:,} candidates scored; {self.reason}"
                f" [filter {self.filter_ms:.1f} ms{cache}, search {self.search_ms:.1f} ms]")


def plan_route(rows: int, allowed: int | None, indexed: bool, *, exact: bool | None = None) -> tuple[str, str]:
    """The route for a query over ``rows`` vectors of which ``allowed`` pass the filter.

    Thresholds (:data:`EXACT_SUBSET_MAX`, :data:`POSTFILTER_MIN_FRACTION`) come from
    ``benchmarks/bench_ann.py`` (docs/benchmarks_embeddings.md): exact search over a gathered subset
    costs ``allowed x dim`` multiply-adds, so it wins while the subset is small; over-fetching from the
    index costs ``k / selectivity`` candidates, so it wins when the filter keeps much of the table;
    between the two the index searches the allowed row ids only.

    Returns
    -------
    (route, reason)
    """
    if allowed is None:
        if exact:
            return "exact", "exact search requested"
        if not indexed:
            return "exact", "no ANN index (table below the index threshold): exact numpy"
        return "ann", "ANN index; candidates re-ranked with exact distances"
    if exact:
        return "exact_subset", "exact search requested"
    if not indexed:
        return "exact_subset", "no ANN index: exact numpy over the allowed rows"
    fraction = allowed / max(rows, 1)
    if allowed <= EXACT_SUBSET_MAX:
        return "exact_subset", f"{allowed:,} allowed <= {EXACT_SUBSET_MAX:,}: exact over the subset"
    if fraction >= POSTFILTER_MIN_FRACTION:
        return "ann_postfilter", (f"selectivity {fraction:.3f} >= {POSTFILTER_MIN_FRACTION}: "
                                  "ANN over-fetch, keep the allowed, exact re-rank")
    return "ann_prefilter", (f"{allowed:,} allowed > {EXACT_SUBSET_MAX:,} and selectivity {fraction:.3f} < "
                             f"{POSTFILTER_MIN_FRACTION}: ANN restricted to the allowed row ids")


def _hits(m: Matrix, pos: np.ndarray, dist: np.ndarray) -> pa.Table:
    keep = np.isfinite(dist)
    return pa.table({"galaxy_id": m.ids.take(pa.array(pos[keep], pa.int64())).cast(pa.string()),
                     "distance": pa.array(np.maximum(dist[keep], 0.0), pa.float32())})


def _exact_over(m: Matrix, qn: np.ndarray, k: int, pos: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Exact top k over all rows (``pos`` None) or the rows at ``pos`` (a gather, or a mask when most)."""
    if pos is None:
        idx, dist = cosine_topk(m.unit, qn, k, m.valid)
        return idx, dist, len(m.unit)
    if pos.size == 0:
        return pos, np.zeros(0, np.float32), 0
    if pos.size > len(m.unit) // 3:  # most rows: one pass over the matrix beats copying them
        dist = (1.0 - m.unit @ qn).astype(np.float32, copy=False)
        mask = np.zeros(len(dist), bool)
        mask[pos] = True
        dist = np.where(mask & m.valid, dist, np.float32(np.inf))
        kk = min(k, pos.size)
        idx = np.argpartition(dist, kk - 1)[:kk]
        idx = idx[np.lexsort((idx, dist[idx]))]
        return idx, dist[idx], len(dist)
    idx, dist = cosine_topk(m.unit[pos], qn, k, m.valid[pos])
    return pos[idx], dist, int(pos.size)


def _ann_candidates(ds, qn: np.ndarray, limit: int, nprobes: int, rowid_filter: np.ndarray | None) -> np.ndarray:
    """Lance row ids of ``limit`` ANN candidates (unindexed fragments are searched flat by Lance)."""
    nearest = {"column": "vector", "q": qn, "k": int(limit), "nprobes": int(nprobes), "use_index": True}
    kwargs: dict[str, Any] = {}
    if rowid_filter is not None:
        kwargs = {"filter": f"_rowid IN ({', '.join(map(str, rowid_filter.tolist()))})", "prefilter": True}
    res = ds.to_table(columns=[], nearest=nearest, with_row_id=True, disable_scoring_autoprojection=True, **kwargs)
    return res.column("_rowid").to_numpy().astype(np.int64)


def _rerank(m: Matrix, qn: np.ndarray, pos: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    pos = np.unique(pos)
    idx, dist = cosine_topk(m.unit[pos], qn, k, m.valid[pos])
    return pos[idx], dist


def knn_plan(
    wh: TableStore,
    table: str,
    vector: np.ndarray,
    k: int = 10,
    allowed: Sequence[str] | pa.Array | pa.ChunkedArray | None = None,
    *,
    nprobes: int | None = None,
    refine_factor: int | None = None,
    exact: bool | None = None,
    route: str | None = None,
    _positions: Callable[[Matrix], tuple[np.ndarray, bool]] | None = None,
) -> tuple[pa.Table, SearchPlan]:
    """:func:`knn` and the :class:`SearchPlan` it followed.

    ``route`` forces one of :data:`ROUTES` (benchmarks, tests); an ANN route on a table without an
    index is an error. ``_positions`` (internal, :func:`similar_plan`): the cached matrix -> the allowed
    positions in it and whether they came from the filter cache, instead of ``allowed``.
    """
    t0 = time.perf_counter()
    snap = snapshot_of(wh)
    ds = snap.dataset(table)
    version = int(ds.version)
    dim = snap.session.memo(("dim", table, version), lambda: dim_of(ds))
    q = np.asarray(vector, dtype=np.float32).reshape(-1)
    if q.shape[0] != dim:
        raise WarehouseError(f"query vector has {q.shape[0]} values; {table!r} holds {dim}-d vectors")
    if not np.isfinite(q).all() or not np.any(q):
        raise WarehouseError("query vector is zero or not finite; cosine distance is undefined")
    if k < 1:
        raise WarehouseError(f"k must be >= 1, got {k}")
    if route is not None and route not in ROUTES:
        raise WarehouseError(f"unknown route {route!r}; one of {', '.join(ROUTES)}")
    qn = q / np.float32(np.linalg.norm(q))
    m = matrix(snap, table)
    # a version's index segments do not change: listed once per version (Lance's describe_indices and
    # count_rows cost milliseconds per call), not per query
    indexed, unindexed = snap.session.memo(("index_cover", table, version), lambda: index_cover(ds))
    n = len(m.unit)
    pos = None
    cached = False
    tf = time.perf_counter()
    if _positions is not None:
        pos, cached = _positions(m)
    elif allowed is not None:
        arr = allowed if isinstance(allowed, pa.Array | pa.ChunkedArray) else pa.array(list(allowed), pa.string())
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        pos = m.positions(arr)
    t_filter = (time.perf_counter() - tf) * 1000
    n_allowed = None if pos is None else int(pos.size)
    chosen, reason = plan_route(n, n_allowed, indexed, exact=exact)
    if route is not None:
        if route.startswith("ann") and not indexed:
            raise WarehouseError(f"route {route!r} needs an ANN index; {table!r} has none (build_index)")
        if (route in ("exact", "ann")) != (pos is None):
            raise WarehouseError(f"route {route!r} does not apply to a {'un' if pos is None else ''}filtered query")
        chosen, reason = route, "route forced by the caller"
    probes = nprobes or DEFAULT_NPROBES
    refine = refine_factor or DEFAULT_REFINE_FACTOR
    if pos is not None and pos.size == 0:
        idx, dist, scored = pos, np.zeros(0, np.float32), 0
    elif chosen in ("exact", "exact_subset"):
        idx, dist, scored = _exact_over(m, qn, k, pos)
    elif chosen == "ann":
        cand = m.positions_of_rowids(_ann_candidates(ds, qn, min(n, k * refine), probes, None))
        idx, dist = _rerank(m, qn, cand, k)
        scored = int(cand.size)
    elif chosen == "ann_prefilter":
        assert pos is not None
        limit = min(int(pos.size), k * refine)
        cand = m.positions_of_rowids(np.sort(_ann_candidates(ds, qn, limit, probes, m.rowids[pos])))
        idx, dist = _rerank(m, qn, cand, k)
        scored = int(cand.size)
    else:  # ann_postfilter
        assert pos is not None
        fraction = pos.size / max(n, 1)
        limit = int(min(n, np.ceil(OVERFETCH * k * refine / fraction)))
        cand = m.positions_of_rowids(_ann_candidates(ds, qn, limit, probes, None))
        mask = np.zeros(n, bool)
        mask[pos] = True
        kept = cand[mask[cand]]
        scored = int(kept.size)
        if kept.size >= k:
            idx, dist = _rerank(m, qn, kept, k)
        else:
            idx, dist, more = _exact_over(m, qn, k, pos)
            scored += more
            chosen, reason = "exact_subset", (f"post-filter kept {kept.size} < k of {limit:,} ANN candidates: "
                                              "exact over the subset")
    t_search = (time.perf_counter() - t0) * 1000 - t_filter
    plan = SearchPlan(chosen, n, n_allowed, None if n_allowed is None else n_allowed / max(n, 1), scored,
                      indexed, unindexed, reason, round(t_filter, 3), round(t_search, 3), cached)
    return _hits(m, np.asarray(idx, np.int64), np.asarray(dist, np.float32)), plan


def knn(
    wh: TableStore,
    table: str,
    vector: np.ndarray,
    k: int = 10,
    allowed: Sequence[str] | pa.Array | None = None,
    *,
    nprobes: int | None = None,
    refine_factor: int | None = None,
    exact: bool | None = None,
    route: str | None = None,
) -> pa.Table:
    """The k nearest rows of ``table`` to ``vector``: Arrow table ``galaxy_id, distance`` sorted by distance.

    Parameters
    ----------
    allowed : sequence of str, optional
        Only these galaxy ids are candidates (pre-filter semantics: the result is the k nearest
        *allowed* rows).
    nprobes, refine_factor : int, optional
        ANN parameters (defaults :data:`DEFAULT_NPROBES`, :data:`DEFAULT_REFINE_FACTOR`):
        ``refine_factor * k`` ANN candidates are re-ranked with exact distances.
    exact : bool, optional
        Force exact search; default: the route :func:`plan_route` picks.
    route : str, optional
        Force a route (see :func:`knn_plan`).

    Notes
    -----
    Every route reads the table version's vectors from one cached, L2-normalised matrix (loaded once
    per version; an index build or an append reuses it), so ``allowed`` becomes row positions in it
    and every answer's distances are exact. See :func:`plan_route` for which route serves a query.
    """
    return knn_plan(wh, table, vector, k, allowed, nprobes=nprobes, refine_factor=refine_factor,
                    exact=exact, route=route)[0]


