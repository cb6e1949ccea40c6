"""Lookalike search: nearest galaxies in an embeddings table, with SQL filters over galaxy features.

Distances are cosine distances, ``1 - cos(q, v)`` (0 for the same direction, 2 for opposite), on
the CLS token stored in the ``vector`` column of ``embeddings_<encoder>``.

One public search call, :func:`similar_plan` (the CLI, the HTTP service and Python use it; ``similar``
is its neighbours alone). It reads through a :class:`warehouse.session.Snapshot` (pass one to keep
the session's caches: the vector matrix, the ``where`` positions, the engine; a plain warehouse gets a
session for the one call). The package's files say what they are:

========================  ==================================================================
:mod:`.tables`            which embeddings table, a galaxy's stored vector
:mod:`.features`          the galaxy features ``where`` reads; the neighbours' features by key
:mod:`.filters`           ``where`` -> allowed ids (DuckDB, read-only, under the timeout)
:mod:`.matrix`            the normalised vectors of a table version, exact top-k
:mod:`.planner`           the route (exact, exact over a subset, ANN pre/post-filter) and kNN
:mod:`.index`             the ANN index: parameters, build, update, state, recall
:mod:`.similar`           the search call itself
========================  ==================================================================
"""

from warehouse.search.features import features_by_id, features_query
from warehouse.search.filters import allowed_id_array, allowed_ids
from warehouse.search.index import (
    INDEX_MIN_ROWS,
    INDEX_NAME,
    METRIC,
    REBUILD_FRACTION,
    IndexParams,
    IndexReport,
    build_index,
    default_index_params,
    index_state,
    recall_at_k,
    update_index,
)
from warehouse.search.planner import (
    DEFAULT_NPROBES,
    DEFAULT_REFINE_FACTOR,
    EXACT_SUBSET_MAX,
    OVERFETCH,
    POSTFILTER_MIN_FRACTION,
    ROUTES,
    SearchPlan,
    knn,
    knn_plan,
    plan_route,
)
from warehouse.search.similar import SimilarResult, similar, similar_plan
from warehouse.search.tables import ENCODER_PREFERENCE, embedding_tables, pick_table, query_vector

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
    "features_by_id",
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
