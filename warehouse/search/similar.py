"""The one search call: the k galaxies most similar to a galaxy or a vector, optionally filtered by ``where``.

How a query runs (:func:`similar_plan`):

1. The query vector is the stored vector of a galaxy id (a ``take`` by key), or a vector given directly
   (the CLI and the server embed an image first; this package never imports torch).
2. ``where`` (a SQL predicate over the galaxy features, :func:`warehouse.search.features.features_query`)
   is evaluated by the snapshot's DuckDB engine to the allowed ids *before* the k nearest are chosen
   (pre-filtering), then to row positions in the cached matrix; the positions are cached by the session
   per (table versions, table, where).
3. :func:`warehouse.search.planner.knn_plan` picks the route and scores exact distances.
4. The neighbours' features are fetched by key (:func:`warehouse.search.features.features_by_id`) and
   returned with them as an Arrow table (:attr:`SimilarResult.table`; ``neighbours`` is it as polars):
   ``rank, galaxy_id, distance, <feature columns>``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.search.features import features_by_id
from warehouse.search.filters import allowed_id_array
from warehouse.search.matrix import Matrix
from warehouse.search.planner import SearchPlan, knn_plan, matrix
from warehouse.search.tables import pick_table, query_vector
from warehouse.session import snapshot_of
from warehouse.sql_engine import SQLLimits
from warehouse.store import TableStore

__all__ = ["SimilarResult", "similar", "similar_plan"]


@dataclass(frozen=True)
class SimilarResult:
    """What :func:`similar_plan` returns: the neighbours (as Arrow, and as polars on first use) and the plan.

    Attributes
    ----------
    table : pyarrow.Table
        ``rank, galaxy_id, distance, <feature columns>`` (the server answers from it: no frame is made).
    plan : SearchPlan
    """

    table: pa.Table
    plan: SearchPlan

    @cached_property
    def neighbours(self) -> pl.DataFrame:
        """:attr:`table` as a polars DataFrame."""
        out = pl.from_arrow(self.table)
        assert isinstance(out, pl.DataFrame)
        return out


def similar_plan(
    wh: TableStore,
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
    snap = snapshot_of(wh, limits)
    table = pick_table(snap, encoder)
    if isinstance(query, str):
        qid: str | None = query
        stored = matrix(snap, table).vector(query)  # its row of the cached matrix (same direction)
        vec = stored if stored is not None else query_vector(snap, table, query)  # the one-line error
    else:
        qid = None
        vec = np.asarray(query, dtype=np.float32)
    sql_ms = 0.0

    def positions(m: Matrix) -> tuple[np.ndarray, bool]:
        nonlocal sql_ms
        key = (tuple(sorted(snap.pins.items())), table, where)
        hit = snap.session.filters.get(key)
        if hit is not None:
            return hit, True
        t0 = time.perf_counter()
        timeout = None if limits is None else limits.timeout_s  # default: the session's limits
        pos = m.positions(allowed_id_array(snap, where, snap.engine(), timeout))  # type: ignore[arg-type]
        sql_ms = (time.perf_counter() - t0) * 1000
        return snap.session.filters.put(key, pos, pos.nbytes), False

    extra = 1 if (exclude_query and qid is not None) else 0
    hits, plan = knn_plan(snap, table, vec, k + extra, nprobes=nprobes, refine_factor=refine_factor,
                          exact=exact, route=route, _positions=positions if where else None)
    if extra:
        hits = hits.filter(pc.not_equal(hits.column("galaxy_id"), qid))
    hits = hits.slice(0, k)
    hits = hits.add_column(0, "rank", pa.array(np.arange(1, hits.num_rows + 1), pa.int64()))
    if snap.exists("galaxies") and hits.num_rows:  # the features of the k found, in their order (a left join)
        ids = hits.column("galaxy_id").to_pylist()
        feats = features_by_id(snap, ids)
        feats = feats.drop_columns([c for c in ("rank", "distance") if c in feats.column_names])
        if not feats.column("galaxy_id").equals(hits.column("galaxy_id")):  # some have no features: align
            feats = feats.take(pc.index_in(hits.column("galaxy_id"), value_set=feats.column("galaxy_id")))
        keep = [i for i, name in enumerate(feats.column_names) if name != "galaxy_id"]
        # one table built from the columns (an append_column per column copied the table ~50 times)
        hits = pa.Table.from_arrays([*hits.columns, *(feats.column(i) for i in keep)],
                                    schema=pa.schema([*hits.schema, *(feats.schema.field(i) for i in keep)]))
    return SimilarResult(hits, plan)


def similar(
    wh: TableStore,
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

