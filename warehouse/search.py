"""Lookalike search: nearest galaxies in an embeddings table, with SQL filters over galaxy features.

Distances are cosine distances, ``1 - cos(q, v)`` (0 for the same direction, 2 for opposite), on
the CLS token stored in the ``vector`` column of ``embeddings_<encoder>``.

How a query runs (:func:`similar`):

1. The query vector is the stored vector of a galaxy id, or a vector given directly (the CLI embeds an
   image first; this package never imports torch).
2. ``where`` (a SQL predicate over the galaxy features: the ``galaxy_features`` view when one exists,
   else ``galaxies`` joined with the ``morphometrics`` / ``photometry`` tables keyed by galaxy_id) is
   evaluated by DuckDB (:class:`warehouse.sql_engine.SQLEngine`, read-only) to the set of allowed ids
   *before* the k nearest are chosen (pre-filtering: the k results all satisfy ``where``, and there are
   k of them whenever k galaxies do).
3. Every route reads one cached matrix of the table version's vectors, L2-normalised (keyed by the
   Lance version; a version with the same fragments, e.g. after an index build, reuses it, and one
   that appended fragments reads only those). The allowed ids become row positions in it, and
   :func:`plan_route` picks, from the table size, the allowed count and whether an index exists:
   ``exact`` / ``exact_subset`` (numpy over all rows / over the gathered allowed rows), ``ann`` (a
   LanceDB IVF_HNSW_SQ index built by :func:`build_index`), ``ann_prefilter`` (the index restricted
   to the allowed Lance row ids) or ``ann_postfilter`` (over-fetch from the index, keep the allowed).
   ANN candidates are re-ranked with exact distances from the matrix, so every distance returned is
   exact. The :class:`SearchPlan` (route, selectivity, candidates, why) comes back with the result
   (:func:`similar_plan`). Rows appended after the index was built are searched flat by Lance and
   merged; :func:`update_index` adds them to the index. The thresholds come from
   ``benchmarks/bench_ann.py`` (see ``docs/benchmarks_embeddings.md``).
4. The neighbours are joined to their features and returned as a polars DataFrame:
   ``rank, galaxy_id, distance, <feature columns>``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from warehouse import schemas
from warehouse.errors import WarehouseError
from warehouse.schemas.embeddings import TABLE_PREFIX, embedding_table, encoder_of_table
from warehouse.sqltext import ident, quote

if TYPE_CHECKING:
    from warehouse.sql_engine import SQLEngine, SQLLimits
    from warehouse.store import Warehouse

__all__ = [
    "DEFAULT_NPROBES",
    "DEFAULT_REFINE_FACTOR",
    "ENCODER_PREFERENCE",
    "EXACT_SUBSET_MAX",
    "INDEX_MIN_ROWS",
    "INDEX_NAME",
    "METRIC",
    "OVERFETCH",
    "POSTFILTER_MIN_FRACTION",
    "REBUILD_FRACTION",
    "ROUTES",
    "IndexParams",
    "IndexReport",
    "SearchPlan",
    "SimilarResult",
    "allowed_id_array",
    "allowed_ids",
    "build_index",
    "default_index_params",
    "embedding_tables",
    "features_query",
    "index_state",
    "knn",
    "knn_plan",
    "pick_table",
    "plan_route",
    "query_vector",
    "recall_at_k",
    "similar",
    "similar_plan",
    "update_index",
]

METRIC = "cosine"
"""Distance used everywhere: ``1 - cos``."""

INDEX_MIN_ROWS = 100_000
"""Tables with fewer rows are searched exactly with numpy (~36 ms at 100k x 768 on 2 cores; no build wait)."""

EXACT_SUBSET_MAX = 20_000
"""With an ANN index, a ``where`` allowing at most this many galaxies is answered exactly over them."""

POSTFILTER_MIN_FRACTION = 0.05
"""With an ANN index, a ``where`` allowing at least this fraction is served by over-fetching and filtering."""

OVERFETCH = 1.5
"""ANN over-fetch + post-filter asks for ``OVERFETCH * refine_factor * k / selectivity`` candidates."""

REBUILD_FRACTION = 0.5
""":func:`update_index` retrains the index (rather than adding new rows to its cells) above this unindexed fraction."""

DEFAULT_NPROBES = 8
"""IVF partitions probed per query (ANN only). At 1M x 384 (realistic vectors): recall@10 0.993, p50 2.9 ms (refine 5)."""

DEFAULT_REFINE_FACTOR = 5
"""ANN candidates re-ranked with exact distances: ``refine_factor * k``."""

INDEX_NAME = "vector_idx"
"""LanceDB's name for the index on the ``vector`` column."""

ENCODER_PREFERENCE = ("dinov2_vits14", "dinov2_vitb14", "ssl_resnet18")
"""When several embeddings tables exist and no encoder is named, the first of these that exists."""

_PROVENANCE = set(schemas.PROVENANCE_COLUMNS)
_FEATURE_TABLES = ("morphometrics", "photometry")


# ------------------------------------------------------------------------------------ tables
def embedding_tables(wh: Warehouse) -> list[str]:
    """The embeddings tables that exist in the warehouse, sorted."""
    return [t for t in wh.tables() if t.startswith(TABLE_PREFIX)]


def pick_table(wh: Warehouse, encoder: str | None = None) -> str:
    """The embeddings table to search: ``embeddings_<encoder>``, or the only / preferred one.

    Raises
    ------
    WarehouseError
        No embeddings exist, the named encoder has none, or several exist and none is preferred.
    """
    tables = embedding_tables(wh)
    if encoder:
        try:
            table = embedding_table(encoder)
        except ValueError as exc:
            raise WarehouseError(str(exc)) from None
        if table not in tables:
            have = ", ".join(encoder_of_table(t) or t for t in tables) or "none"
            raise WarehouseError(f"no embeddings for encoder {encoder!r} (have: {have}); run `astrovision embed`")
        return table
    if not tables:
        raise WarehouseError(f"no embeddings in {wh.root}; run `astrovision embed` (or the demo) first")
    if len(tables) == 1:
        return tables[0]
    for name in ENCODER_PREFERENCE:
        if embedding_table(name) in tables:
            return embedding_table(name)
    raise WarehouseError(
        f"several embeddings tables ({', '.join(tables)}); name one with encoder=... / --encoder"
    )


_TABLES: dict[tuple[str, str], Any] = {}


def _open(wh: Warehouse, table: str):
    """A cached LanceDB table handle; strongly consistent (every call sees the latest version)."""
    key = (str(wh.lance_dir), table)
    tbl = _TABLES.get(key)
    if tbl is None:
        import lancedb

        if not wh.exists(table):
            raise WarehouseError(f"table {table!r} does not exist in {wh.root}")
        db = lancedb.connect(str(wh.lance_dir), read_consistency_interval=timedelta(0))
        tbl = _TABLES[key] = db.open_table(table)
    return tbl


def _has_index(tbl) -> bool:
    return any("vector" in (getattr(ix, "columns", None) or []) for ix in tbl.list_indices())


def _dim(wh: Warehouse, table: str) -> int:
    return int(_open(wh, table).schema.field("vector").type.list_size)


def _as_matrix(col: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if len(arr) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    return np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(arr), dim)


def query_vector(wh: Warehouse, table: str, galaxy_id: str) -> np.ndarray:
    """The stored vector of one galaxy (``WarehouseError`` when it has none)."""
    rows = wh.read(table, columns=["vector"], where=f"galaxy_id = {quote(galaxy_id)}")
    if rows.num_rows == 0:
        raise WarehouseError(f"galaxy {galaxy_id!r} has no vector in {table!r}; is the id right, and is it embedded?")
    return _as_matrix(rows.column("vector"), _dim(wh, table))[0]


# ------------------------------------------------------------------------------------ filters
def features_query(engine: SQLEngine) -> str:
    """The SELECT whose rows are the galaxy features ``where`` may refer to.

    The ``galaxy_features`` view when the SQL files define one; else ``galaxies`` (its own columns)
    LEFT JOINed with each of ``morphometrics`` and ``photometry`` that is keyed by ``galaxy_id`` alone,
    their columns prefixed with the table name where a name is already taken (``photometry_flags``).
    """
    if "galaxy_features" in engine.views:
        return "SELECT * FROM galaxy_features"
    gal = schemas.get("galaxies")
    taken = set(gal.columns.names)
    select = [f"g.{ident(c)}" for c in gal.columns.names]
    joins = []
    for i, name in enumerate(_FEATURE_TABLES):
        if name not in engine.relations:
            continue
        spec = schemas.registered().get(name)
        if spec is None or tuple(spec.keys) != ("galaxy_id",):
            continue
        alias = f"t{i}"
        for col in spec.columns.names:
            if col == "galaxy_id" or col in _PROVENANCE:
                continue
            out = col if col not in taken else f"{name}_{col}"
            taken.add(out)
            select.append(f"{alias}.{ident(col)} AS {ident(out)}")
        joins.append(f"LEFT JOIN {name} {alias} ON {alias}.galaxy_id = g.galaxy_id")
    return f"SELECT {', '.join(select)} FROM galaxies g {' '.join(joins)}"


_ENGINES: OrderedDict[tuple, SQLEngine] = OrderedDict()
_FILTERS: OrderedDict[tuple, np.ndarray] = OrderedDict()
_ENGINE_CACHE = 8
_FILTER_CACHE = 64
_LOCK = threading.Lock()


def _engine(wh: Warehouse, limits: SQLLimits | None = None) -> tuple[SQLEngine, tuple]:
    """A DuckDB engine over the warehouse's current (or pinned) table versions, reused while they last.

    Keyed by every table's version (and the thread: a DuckDB connection serves one query at a
    time) and the ``limits`` it runs under, so a write anywhere makes the next query build a fresh
    one. Returns the engine and the versions key (which also keys the ``where`` -> row positions cache).
    """
    from warehouse.sql_engine import SQLEngine

    versions = wh.versions()
    vkey = (str(wh.root), tuple(sorted(versions.items())))
    key = (*vkey, threading.get_ident(), limits)
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is not None:
            _ENGINES.move_to_end(key)
            return engine, vkey
    engine = SQLEngine(wh, versions, limits)
    with _LOCK:
        _ENGINES[key] = engine
        while len(_ENGINES) > _ENGINE_CACHE:
            _ENGINES.popitem(last=False)
    return engine, vkey


def allowed_ids(wh: Warehouse, where: str, engine: SQLEngine | None = None,
                timeout_s: float | None = None) -> list[str]:
    """The galaxy ids whose features satisfy the SQL predicate ``where`` (read-only DuckDB).

    ``where`` is bound as one SQL expression over :func:`features_query`'s rows
    (:meth:`warehouse.sql_engine.SQLEngine.select_where`), never pasted into the query text; it is
    interrupted after ``timeout_s`` (default: the engine's :class:`~warehouse.sql_engine.SQLLimits`).

    Raises
    ------
    warehouse.SQLError
        ``where`` is not one expression, or a bad one (one line naming the problem and the tables).
    """
    return allowed_id_array(wh, where, engine, timeout_s).to_pylist()


def allowed_id_array(wh: Warehouse, where: str, engine: SQLEngine | None = None,
                     timeout_s: float | None = None) -> pa.Array:
    """:func:`allowed_ids` as an Arrow string array (no Python list: a million ids stay in Arrow)."""
    from warehouse.sql_engine import SQLEngine

    engine = engine or SQLEngine(wh)
    rows = engine.select_where(features_query(engine), where, columns=["galaxy_id"], timeout_s=timeout_s)
    return rows.column("galaxy_id").combine_chunks()


# ------------------------------------------------------------------------------------ kNN
def _cosine_topk(unit: np.ndarray, qn: np.ndarray, k: int,
                 valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine distances of the k nearest rows of L2-normalised ``unit`` to unit ``qn`` (exact).

    ``valid``: rows that have a direction (zero vectors are never neighbours).
    """
    dist = (1.0 - unit @ qn).astype(np.float32, copy=False)
    if valid is not None and not valid.all():
        dist = np.where(valid, dist, np.float32(np.inf))
    k = min(k, len(dist))
    if k == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    idx = np.argpartition(dist, k - 1)[:k] if k < len(dist) else np.arange(len(dist))
    idx = idx[np.lexsort((idx, dist[idx]))]
    return idx, dist[idx]


def _fragment_key(ds) -> tuple:
    """What the rows of a dataset version are: its fragments' ids, data files, sizes and deletions."""
    return tuple((f.fragment_id, f.metadata.physical_rows, repr(f.metadata.deletion_file),
                  tuple(d.path for d in f.metadata.files)) for f in ds.get_fragments())


@dataclass
class _Matrix:
    """The vectors of one table version, L2-normalised, with their ids and Lance row ids (for exact search)."""

    version: int
    fragments: tuple
    ids: pa.Array
    rowids: np.ndarray  # ascending: Lance row ids (fragment << 32 | offset) of each position
    unit: np.ndarray
    valid: np.ndarray
    _rows: dict[str, int] | None = None

    @property
    def rows(self) -> dict[str, int]:
        """``galaxy_id`` -> position, built on first use."""
        if self._rows is None:
            self._rows = {g: i for i, g in enumerate(self.ids.to_pylist())}
        return self._rows

    def positions(self, ids: pa.Array) -> np.ndarray:
        """Ascending positions of the given ids (ids not in the table are skipped)."""
        if len(ids) <= _DICT_LOOKUP_MAX:
            rows = self.rows
            pos = np.fromiter((rows[g] for g in ids.to_pylist() if g in rows), dtype=np.int64)
            return np.unique(pos)
        return np.flatnonzero(pc.is_in(self.ids, value_set=ids).to_numpy(zero_copy_only=False))

    def positions_of_rowids(self, rowids: np.ndarray) -> np.ndarray:
        """Positions of Lance row ids of this version (every one is present: same version)."""
        pos = np.searchsorted(self.rowids, rowids)
        pos = np.minimum(pos, len(self.rowids) - 1)
        if not np.array_equal(self.rowids[pos], rowids):
            raise WarehouseError("ANN returned row ids outside the cached table version; retry the query")
        return pos


_DICT_LOOKUP_MAX = 50_000
_MATRICES: dict[str, _Matrix] = {}


def _read_part(ds, dim: int, fragments=None) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray]:
    kwargs = {} if fragments is None else {"fragments": fragments}
    data = ds.scanner(columns=["galaxy_id", "vector"], with_row_id=True, **kwargs).to_table()
    ids = data.column("galaxy_id").combine_chunks()
    rowids = data.column("_rowid").to_numpy().astype(np.int64)
    vectors = _as_matrix(data.column("vector"), dim)
    norms = np.linalg.norm(vectors, axis=1)
    valid = np.isfinite(norms) & (norms > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = np.where(valid[:, None], vectors / np.where(valid, norms, 1.0)[:, None], 0.0).astype(np.float32)
    return ids, rowids, unit, valid


def _matrix(wh: Warehouse, table: str, ds=None) -> _Matrix:
    """All vectors of a table version in memory, normalised once, cached per version.

    A new version with the same fragments (an index built or optimised) reuses the cached matrix; one
    that only appended fragments reads just those (a new shard embedded costs its own rows, not the table).
    """
    uri = wh.table_uri(table)
    ds = ds if ds is not None else wh.dataset(table)  # the pinned one, for a pinned warehouse
    version = int(ds.version)
    cached = _MATRICES.get(uri)
    if cached is not None and cached.version == version:
        return cached
    key = _fragment_key(ds)
    dim = _dim_of(ds)
    if cached is not None and cached.fragments == key:
        cached.version = version
        return cached
    if cached is not None and key[:len(cached.fragments)] == cached.fragments and cached.fragments:
        old = {f[0] for f in cached.fragments}
        ids, rowids, unit, valid = _read_part(ds, dim, [f for f in ds.get_fragments() if f.fragment_id not in old])
        ids = pa.concat_arrays([cached.ids, ids])
        rowids = np.concatenate([cached.rowids, rowids])
        unit = np.concatenate([cached.unit, unit])
        valid = np.concatenate([cached.valid, valid])
    else:
        ids, rowids, unit, valid = _read_part(ds, dim)
    if len(rowids) > 1 and not np.all(rowids[1:] > rowids[:-1]):
        order = np.argsort(rowids, kind="stable")
        ids, rowids, unit, valid = ids.take(pa.array(order)), rowids[order], unit[order], valid[order]
    _MATRICES.clear()  # one table at a time: bounded memory
    cached = _MATRICES[uri] = _Matrix(version, key, ids, rowids, unit, valid)
    return cached


_DATASETS: dict[str, Any] = {}


def _search_dataset(wh: Warehouse, table: str):
    """The table's dataset at the warehouse's (pinned or latest) version, sharing one Lance session.

    A freshly opened dataset has cold caches, so its first ANN query reads every probed index
    partition from disk (15x slower at 50,000 rows); a version checked out from a cached dataset
    keeps its session (index and metadata caches), and index files are shared across versions.
    """
    ds = wh.dataset(table)
    uri = wh.table_uri(table)
    with _LOCK:
        warm = _DATASETS.get(uri)
        if warm is None:
            _DATASETS[uri] = ds
            return ds
        if warm.version != ds.version:
            warm = _DATASETS[uri] = warm.checkout_version(ds.version)
        return warm


def _dim_of(ds) -> int:
    return int(ds.schema.field("vector").type.list_size)


def _index_cover(ds) -> tuple[bool, int]:
    """Whether the dataset version has the vector index, and how many of its rows it does not cover."""
    segments = [ix for ix in ds.list_indices() if "vector" in (ix.get("fields") or [])]
    if not segments:
        return False, int(ds.count_rows())
    covered = set().union(*(set(ix.get("fragment_ids") or []) for ix in segments))  # base + delta segments
    return True, int(sum(f.count_rows() for f in ds.get_fragments() if f.fragment_id not in covered))


# ------------------------------------------------------------------------------------ planner
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


def _hits(m: _Matrix, pos: np.ndarray, dist: np.ndarray) -> pa.Table:
    keep = np.isfinite(dist)
    return pa.table({"galaxy_id": m.ids.take(pa.array(pos[keep], pa.int64())).cast(pa.string()),
                     "distance": pa.array(np.maximum(dist[keep], 0.0), pa.float32())})


def _exact_over(m: _Matrix, qn: np.ndarray, k: int, pos: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Exact top k over all rows (``pos`` None) or the rows at ``pos`` (a gather, or a mask when most)."""
    if pos is None:
        idx, dist = _cosine_topk(m.unit, qn, k, m.valid)
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
    idx, dist = _cosine_topk(m.unit[pos], qn, k, m.valid[pos])
    return pos[idx], dist, int(pos.size)


def _ann_candidates(ds, qn: np.ndarray, limit: int, nprobes: int, rowid_filter: np.ndarray | None) -> np.ndarray:
    """Lance row ids of ``limit`` ANN candidates (unindexed fragments are searched flat by Lance)."""
    nearest = {"column": "vector", "q": qn, "k": int(limit), "nprobes": int(nprobes), "use_index": True}
    kwargs: dict[str, Any] = {}
    if rowid_filter is not None:
        kwargs = {"filter": f"_rowid IN ({', '.join(map(str, rowid_filter.tolist()))})", "prefilter": True}
    res = ds.to_table(columns=[], nearest=nearest, with_row_id=True, disable_scoring_autoprojection=True, **kwargs)
    return res.column("_rowid").to_numpy().astype(np.int64)


def _rerank(m: _Matrix, qn: np.ndarray, pos: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    pos = np.unique(pos)
    idx, dist = _cosine_topk(m.unit[pos], qn, k, m.valid[pos])
    return pos[idx], dist


def knn_plan(
    wh: Warehouse,
    table: str,
    vector: np.ndarray,
    k: int = 10,
    allowed: Sequence[str] | pa.Array | pa.ChunkedArray | None = None,
    *,
    nprobes: int | None = None,
    refine_factor: int | None = None,
    exact: bool | None = None,
    route: str | None = None,
    _positions: Callable[[_Matrix], tuple[np.ndarray, bool]] | None = None,
) -> tuple[pa.Table, SearchPlan]:
    """:func:`knn` and the :class:`SearchPlan` it followed.

    ``route`` forces one of :data:`ROUTES` (benchmarks, tests); an ANN route on a table without an
    index is an error. ``_positions`` (internal, :func:`similar_plan`): the cached matrix -> the allowed
    positions in it and whether they came from the filter cache, instead of ``allowed``.
    """
    t0 = time.perf_counter()
    ds = _search_dataset(wh, table)
    dim = _dim_of(ds)
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
    m = _matrix(wh, table, ds)
    indexed, unindexed = _index_cover(ds)
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
    wh: Warehouse,
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


# ------------------------------------------------------------------------------------ similar
@dataclass(frozen=True)
class SimilarResult:
    """What :func:`similar_plan` returns: the neighbours and the plan that found them."""

    neighbours: pl.DataFrame
    plan: SearchPlan


def similar_plan(
    wh: Warehouse,
    query: str | np.ndarray | Sequence[float],
    k: int = 10,
    where: str | None = None,
    encoder: str | None = None,
    *,
    exclude_query: bool = False,
    nprobes: int | None = None,
    refine_factor: int | None = None,
    exact: bool | None = None,
    route: str | None = None,
    limits: SQLLimits | None = None,
) -> SimilarResult:
    """The k galaxies most similar to a galaxy or a vector, and the :class:`SearchPlan` that served them.

    The one code path behind :func:`similar`, ``astrovision similar`` and the HTTP ``similar``
    endpoints. Parameters as :func:`similar`; ``route`` as :func:`knn_plan`; ``limits`` bound the
    DuckDB engine that evaluates ``where`` (its timeout, memory and threads; the server passes its own).
    """
    table = pick_table(wh, encoder)
    if isinstance(query, str):
        qid: str | None = query
        vec = query_vector(wh, table, query)
    else:
        qid = None
        vec = np.asarray(query, dtype=np.float32)
    engine, vkey = _engine(wh, limits) if (where or wh.exists("galaxies")) else (None, ())
    sql_ms = 0.0

    def positions(m: _Matrix) -> tuple[np.ndarray, bool]:
        nonlocal sql_ms
        key = (vkey, table, where)
        with _LOCK:
            hit = _FILTERS.get(key)
        if hit is not None:
            return hit, True
        t0 = time.perf_counter()
        pos = m.positions(allowed_id_array(wh, where, engine))  # type: ignore[arg-type]
        sql_ms = (time.perf_counter() - t0) * 1000
        with _LOCK:
            _FILTERS[key] = pos
            while len(_FILTERS) > _FILTER_CACHE:
                _FILTERS.popitem(last=False)
        return pos, False

    extra = 1 if (exclude_query and qid is not None) else 0
    hits, plan = knn_plan(wh, table, vec, k + extra, nprobes=nprobes, refine_factor=refine_factor,
                          exact=exact, route=route, _positions=positions if where else None)
    if extra:
        hits = hits.filter(pc.not_equal(hits.column("galaxy_id"), qid))
    hits = hits.slice(0, k)
    hits = hits.add_column(0, "rank", pa.array(np.arange(1, hits.num_rows + 1), pa.int64()))
    if engine is not None and hits.num_rows:  # the features of the k found, in their order (a left join)
        ids = ", ".join(quote(g) for g in hits.column("galaxy_id").to_pylist())
        feats = engine.query_arrow(f"SELECT * FROM ({features_query(engine)}) AS f WHERE galaxy_id IN ({ids})",
                                   limit=None)
        feats = feats.drop_columns([c for c in ("rank", "distance") if c in feats.column_names])
        at = pc.index_in(hits.column("galaxy_id"), value_set=feats.column("galaxy_id"))
        feats = feats.take(at)
        for name in feats.column_names:
            if name != "galaxy_id":
                hits = hits.append_column(feats.schema.field(name), feats.column(name))
    out = pl.from_arrow(hits)
    assert isinstance(out, pl.DataFrame)
    return SimilarResult(out, plan)


def similar(
    wh: Warehouse,
    query: str | np.ndarray | Sequence[float],
    k: int = 10,
    where: str | None = None,
    encoder: str | None = None,
    *,
    exclude_query: bool = False,
    nprobes: int | None = None,
    refine_factor: int | None = None,
    exact: bool | None = None,
    route: str | None = None,
) -> pl.DataFrame:
    """The k galaxies most similar to a galaxy or a vector, optionally among those matching ``where``.

    Parameters
    ----------
    wh : Warehouse
    query : str or array
        A ``galaxy_id`` (its stored vector is the query; it is its own nearest neighbour at distance 0
        unless ``exclude_query``) or a vector of the table's width.
    k : int
        Number of neighbours.
    where : str, optional
        SQL predicate over the galaxy features, e.g. ``"label_name = 'Barred Spiral' AND gini > 0.5"``,
        applied before the k nearest are chosen.
    encoder : str, optional
        Which ``embeddings_<encoder>`` table; see :func:`pick_table` for the default.
    exclude_query : bool
        Leave the query galaxy out of the results.
    nprobes, refine_factor, exact, route
        See :func:`knn`.

    Returns
    -------
    polars.DataFrame
        ``rank`` (1 = nearest), ``galaxy_id``, ``distance`` (cosine), then the galaxy's feature columns
        (see :func:`features_query`) when a ``galaxies`` table exists. Fewer than k rows when fewer
        galaxies match. :func:`similar_plan` also returns the route taken.

    Raises
    ------
    WarehouseError
        Unknown galaxy / encoder, wrong vector width, bad ``where`` (``SQLError``).
    """
    return similar_plan(wh, query, k, where, encoder, exclude_query=exclude_query, nprobes=nprobes,
                        refine_factor=refine_factor, exact=exact, route=route).neighbours


# ------------------------------------------------------------------------------------ index
@dataclass(frozen=True)
class IndexParams:
    """ANN index parameters (see :func:`default_index_params`).

    Attributes
    ----------
    index_type : str
        A LanceDB vector index type: ``IVF_HNSW_SQ`` (default), ``IVF_PQ``, ...
    num_partitions : int
        IVF cells.
    num_sub_vectors : int
        PQ sub-vectors (PQ types only).
    num_bits : int
        Bits per PQ code (PQ types only).
    m, ef_construction : int
        HNSW graph degree and construction beam (HNSW types only).
    """

    index_type: str = "IVF_HNSW_SQ"
    num_partitions: int = 1
    num_sub_vectors: int = 48
    num_bits: int = 8
    m: int = 20
    ef_construction: int = 150

    def as_dict(self) -> dict[str, Any]:
        """Plain dict, for metadata."""
        return asdict(self)


def default_index_params(n_rows: int, dim: int, index_type: str = "IVF_HNSW_SQ") -> IndexParams:
    """Index parameters for ``n_rows`` vectors of width ``dim``.

    ``IVF_HNSW_SQ`` (the default): IVF cells of about 50,000 vectors, each holding an HNSW graph
    (Malkov & Yashunin 2020, IEEE TPAMI 42(4)) over 8-bit scalar-quantised vectors, candidates
    re-ranked with exact distances. ``IVF_PQ``: ``~sqrt(n)`` cells and ``dim / 8`` sub-vectors of 8 bits
    (Jégou et al. 2011, "Product quantization for nearest neighbor search", IEEE TPAMI 33(1)).
    Chosen with ``benchmarks/bench_ann.py`` (``docs/benchmarks_embeddings.md``): at 100,000 x 768,
    IVF_HNSW_SQ reached recall@10 1.000 and built 2.8x faster than IVF_PQ (recall 0.994 with refine 20);
    at 1,000,000 x 384 realistic vectors (20 cells, ef_construction 150, nprobes 8, refine 5) recall@10
    0.993 at p50 2.9 ms, 13x faster than exact numpy, built in 131 s on 2 cores.
    """
    sub = dim // 8 if dim % 8 == 0 else next(s for s in range(dim // 8, 0, -1) if dim % s == 0)
    if "HNSW" in index_type:
        parts = max(1, int(n_rows) // 50_000)
    else:
        parts = int(max(1, min(4096, round(np.sqrt(max(n_rows, 1))))))
    return IndexParams(index_type, parts, max(1, sub))


@dataclass(frozen=True)
class IndexReport:
    """What :func:`build_index` did."""

    table: str
    rows: int
    built: bool
    search: str
    reason: str
    params: IndexParams | None = None
    build_s: float = 0.0
    index_bytes: int = 0
    action: str = ""
    unindexed_before: int = 0


def index_state(wh: Warehouse, encoder: str | None = None) -> dict[str, Any]:
    """Whether the table has a vector index and how many rows it does not cover yet."""
    table = pick_table(wh, encoder)
    tbl = _open(wh, table)
    rows = tbl.count_rows()
    if not _has_index(tbl):
        return {"table": table, "rows": rows, "indexed": False, "unindexed_rows": rows}
    stats = tbl.index_stats(INDEX_NAME)
    unindexed = int(getattr(stats, "num_unindexed_rows", 0) or 0) if stats is not None else rows
    return {"table": table, "rows": rows, "indexed": True, "unindexed_rows": unindexed,
            "index_type": getattr(stats, "index_type", None)}


def _index_bytes(wh: Warehouse, table: str) -> int:
    """Bytes under the table's ``_indices`` folder, on disk or in a bucket (through the root's file system)."""
    import pyarrow.fs as pafs

    fs, lance_path = wh.filesystem()
    found = fs.get_file_info(pafs.FileSelector(f"{lance_path}/{table}.lance/_indices", recursive=True,
                                               allow_not_found=True))
    return sum(i.size or 0 for i in found if i.type == pafs.FileType.File)


def build_index(
    wh: Warehouse,
    encoder: str | None = None,
    *,
    min_rows: int = INDEX_MIN_ROWS,
    params: IndexParams | None = None,
    force: bool = False,
) -> IndexReport:
    """Build (or rebuild) the ANN index of an embeddings table when it is large enough.

    Parameters
    ----------
    encoder : str, optional
        See :func:`pick_table`.
    min_rows : int
        Below this many rows nothing is built and search stays exact (an existing index is dropped, so
        a shrunken table is not served by a stale index).
    params : IndexParams, optional
        Default :func:`default_index_params`.
    force : bool
        Build even below ``min_rows`` (tests, benchmarks).
    """
    table = pick_table(wh, encoder)
    tbl = _open(wh, table)
    n = tbl.count_rows()
    if n < min_rows and not force:
        dropped = False
        if _has_index(tbl):
            tbl.drop_index(INDEX_NAME)
            dropped = True
        reason = f"{n} rows < {min_rows}: exact search" + (" (stale index dropped)" if dropped else "")
        return IndexReport(table, n, False, "exact", reason)
    p = params or default_index_params(n, _dim(wh, table))
    if p.index_type.startswith("IVF_PQ") and n < 256:
        raise WarehouseError(f"{table!r} has {n} rows; PQ training needs at least 256")
    t0 = time.perf_counter()
    kwargs: dict[str, Any] = {"num_partitions": min(p.num_partitions, n)}
    if "PQ" in p.index_type:
        kwargs.update(num_sub_vectors=p.num_sub_vectors, num_bits=p.num_bits)
    if "HNSW" in p.index_type:
        kwargs.update(m=p.m, ef_construction=p.ef_construction)
    tbl.create_index(metric=METRIC, vector_column_name="vector", index_type=p.index_type, replace=True,
                     name=INDEX_NAME, **kwargs)
    elapsed = time.perf_counter() - t0
    return IndexReport(table, n, True, "ann", f"{n} rows >= {min_rows}" if not force else "forced",
                       p, elapsed, _index_bytes(wh, table), action="built")


def update_index(
    wh: Warehouse,
    encoder: str | None = None,
    *,
    min_rows: int = INDEX_MIN_ROWS,
    rebuild_fraction: float = REBUILD_FRACTION,
) -> IndexReport:
    """Bring the ANN index up to date with the rows appended since it was built.

    Rows the index does not cover are still found meanwhile (Lance searches unindexed fragments flat
    and merges them with the indexed candidates; tested in ``tests/test_search_planner.py``), at the
    cost of a flat scan that grows with them. This indexes them as a delta segment that uses the
    trained IVF cells (Lance ``optimize_indices(num_indices_to_merge=0)``: no retraining) while the
    rows outside the trained segment are under ``rebuild_fraction`` of the table, and otherwise
    rebuilds it with :func:`build_index` (the cells were trained on less than half of today's
    table). Without an index it is :func:`build_index`.
    """
    table = pick_table(wh, encoder)
    ds = wh.dataset(table)
    indexed, unindexed = _index_cover(ds)
    n = int(ds.count_rows())
    if not indexed or n < min_rows:
        return build_index(wh, encoder, min_rows=min_rows)
    rows = {f.fragment_id: f.count_rows() for f in ds.get_fragments()}
    trained = max(sum(rows.get(i, 0) for i in (ix.get("fragment_ids") or []))
                  for ix in ds.list_indices() if "vector" in (ix.get("fields") or []))
    if n - trained >= rebuild_fraction * n:  # rows the cells were not trained on: unindexed + delta segments
        report = build_index(wh, encoder, min_rows=min_rows)
        return replace(report, action="rebuilt", unindexed_before=unindexed,
                       reason=f"{n - trained} of {n} rows not in the trained index >= {rebuild_fraction:.0%}: retrained")
    if unindexed == 0:
        return IndexReport(table, n, False, "ann", "index covers every row", action="up to date")
    t0 = time.perf_counter()
    # a delta segment over the new fragments, with the trained cells: Lance's default merge (pylance
    # 14.0.2) rebuilt the segments as ONE cell (20 -> 1 at 1M: recall 0.994 -> 0.943, 182 s)
    ds.optimize.optimize_indices(index_names=[INDEX_NAME], num_indices_to_merge=0)
    elapsed = time.perf_counter() - t0
    return IndexReport(table, n, True, "ann", f"{unindexed} of {n} rows added to the existing cells",
                       None, elapsed, _index_bytes(wh, table), action="updated", unindexed_before=unindexed)



def recall_at_k(wh: Warehouse, encoder: str | None = None, *, n_queries: int = 20, k: int = 10,
                seed: int = 0, nprobes: int | None = None, refine_factor: int | None = None) -> float:
    """Mean recall@k of the current search (ANN when indexed) against exact search, on stored vectors.

    ``n_queries`` galaxies are drawn with a fixed seed; each one's ANN neighbours are compared with
    its exact neighbours (ties at the k-th distance count as hits). Returns 1.0 for an unindexed table.
    """
    table = pick_table(wh, encoder)
    ids = wh.read(table, columns=["galaxy_id"]).column("galaxy_id").to_pylist()
    if not ids:
        return float("nan")
    rng = np.random.default_rng(seed)
    chosen = [ids[i] for i in rng.choice(len(ids), size=min(n_queries, len(ids)), replace=False)]
    hits = 0
    total = 0
    for gid in chosen:
        q = query_vector(wh, table, gid)
        truth = knn(wh, table, q, k, exact=True)
        approx = knn(wh, table, q, k, nprobes=nprobes, refine_factor=refine_factor)
        kth = float(truth.column("distance")[-1].as_py())
        want = set(truth.column("galaxy_id").to_pylist())
        got = approx.column("galaxy_id").to_pylist()
        got_d = approx.column("distance").to_numpy()
        hits += sum(1 for g, d in zip(got, got_d) if g in want or d <= kth + 1e-6)
        total += len(want)
    return hits / max(total, 1)
