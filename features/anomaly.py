"""Anomaly scores of embedding vectors: what here is unlike everything else?

Two methods, both fitted on the vectors they score (no labels):

* ``iforest``: scikit-learn's :class:`~sklearn.ensemble.IsolationForest` (Liu, Ting & Zhou 2008) on the
  first principal components of the L2-normalised vectors. The raw score is ``-score_samples``: the
  shorter the mean path that isolates a point, the larger it is.
* ``knn``: the cosine distance to the ``k``-th nearest neighbour among a reference set (every vector, or a
  seeded random sample of ``max_reference`` of them at scale), on the same normalised vectors; the query
  itself is never its own neighbour.

Each raw score becomes a rank in [0, 1] (:func:`to_rank`): 1 is the most anomalous galaxy of the set,
0 the least; ties share their mean rank. Ranks, not raw scores, are what the warehouse stores beside
the raw value, so methods and encoders compare on one scale. Optional extra columns (trusted
morphometrics, standardised) are appended to the components before fitting.

Edge cases: fewer than :data:`MIN_VECTORS` vectors is an :class:`~features.errors.InputError` (a forest
or a neighbour distance of two points says nothing); non-finite vectors are refused; NaN in the extra
columns is replaced by the column median (a missing measurement is not an anomaly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from features.errors import InputError

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "MIN_VECTORS",
    "AnomalyParams",
    "AnomalyScores",
    "kth_neighbour_distance",
    "normalise",
    "reduce",
    "score_vectors",
    "to_rank",
]

METHODS: tuple[str, ...] = ("iforest", "knn")
"""The methods :func:`score_vectors` knows."""

DEFAULT_METHOD = "knn"
"""The method shown first and combined with a ranking where none is named: its order alone found as many
of what the simulated person wanted as ``iforest`` on one benchmark set and more on the other five, and
active learning started from it did best (``docs/benchmarks_anomaly.md``)."""

MIN_VECTORS = 10
"""Fewer vectors get no scores (an error naming the count)."""


@dataclass(frozen=True)
class AnomalyParams:
    """Parameters of the anomaly scores (stored as JSON beside every score).

    Attributes
    ----------
    k : int
        The neighbour whose distance is the ``knn`` score (Astronomaly and most kNN detectors use 5-20).
    n_components : int
        Principal components kept before fitting (0: the normalised vectors as they are).
    n_estimators : int
        Trees of the isolation forest.
    max_reference : int
        Largest reference set of the ``knn`` score; above it a seeded random sample is the reference.
    seed : int
        Seeds the forest, the PCA solver and the reference sample.
    """

    k: int = 10
    n_components: int = 32
    n_estimators: int = 200
    max_reference: int = 10_000
    seed: int = 0


@dataclass(frozen=True)
class AnomalyScores:
    """One method's scores: ``raw`` (larger = more anomalous) and ``rank`` in [0, 1]."""

    method: str
    raw: np.ndarray
    rank: np.ndarray


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero), as ``float32``."""
    x = np.asarray(x, np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def to_rank(raw: np.ndarray) -> np.ndarray:
    """Raw scores to ranks in [0, 1]: ``(rank - 1) / (n - 1)`` with average ranks for ties (one value: 0.5)."""
    from scipy.stats import rankdata

    raw = np.asarray(raw, np.float64)
    if raw.size == 1:
        return np.array([0.5])
    return (rankdata(raw, method="average") - 1.0) / (raw.size - 1.0)


def reduce(x: np.ndarray, params: AnomalyParams, extra: np.ndarray | None = None) -> np.ndarray:
    """Normalised vectors -> their first ``n_components`` principal components (+ standardised ``extra``).

    The PCA is randomised (seeded) above 2,000 rows, so a million vectors cost seconds, not minutes.
    """
    from sklearn.decomposition import PCA

    z = normalise(x)
    n_comp = min(params.n_components, z.shape[0] - 1, z.shape[1])
    if params.n_components > 0 and n_comp < z.shape[1]:
        solver = "randomized" if z.shape[0] > 2000 else "full"
        z = PCA(n_components=n_comp, svd_solver=solver, random_state=params.seed).fit_transform(z).astype(np.float32)
    if extra is not None and extra.size:
        e = np.asarray(extra, np.float64).reshape(z.shape[0], -1)
        med = np.nanmedian(e, axis=0)
        e = np.where(np.isfinite(e), e, np.where(np.isfinite(med), med, 0.0))
        sd = e.std(axis=0)
        e = (e - e.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        # on the scale of one principal component, so a handful of columns does not outweigh 32 of them
        scale = float(np.sqrt(np.mean(z.var(axis=0)))) if z.size else 1.0
        z = np.hstack([z, (e * scale).astype(np.float32)])
    return z


def kth_neighbour_distance(z: np.ndarray, k: int, reference: np.ndarray | None = None,
                           self_in_reference: bool = True, chunk: int | None = None) -> np.ndarray:
    """Euclidean distance from each row of ``z`` to its ``k``-th nearest row of ``reference``.

    On unit vectors this is ``sqrt(2 * cosine distance)``, the same order. Exact, chunked (``chunk`` rows
    at a time, memory ``chunk * len(reference)`` floats; default: 2**24 of them, 64 MiB of float32).
    ``self_in_reference``: ``reference`` is ``z`` itself, so each row's zero distance to itself is skipped.
    """
    ref = z if reference is None else reference
    chunk = chunk or max(1, min(8192, 2**24 // max(ref.shape[0], 1)))
    kk = k + 1 if self_in_reference else k
    if kk > ref.shape[0]:
        raise InputError(f"k={k} needs more than {ref.shape[0]} reference vectors")
    import torch  # its top-k is ~3x numpy's partition here, and the product runs on its threads

    r = torch.from_numpy(np.ascontiguousarray(ref, np.float32))
    r_sq = (r * r).sum(dim=1)
    out = np.empty(z.shape[0], np.float64)
    with torch.no_grad():
        for start in range(0, z.shape[0], chunk):
            q = torch.from_numpy(np.ascontiguousarray(z[start:start + chunk], np.float32))
            d2 = ((q * q).sum(dim=1, keepdim=True) + r_sq[None, :] - 2.0 * (q @ r.T)).clamp_(min=0.0)
            kth = torch.topk(d2, kk, dim=1, largest=False, sorted=True).values[:, kk - 1]
            out[start:start + q.shape[0]] = np.sqrt(kth.double().numpy())
    return out


def _knn(z: np.ndarray, params: AnomalyParams) -> np.ndarray:
    n = z.shape[0]
    if n <= params.max_reference:
        return kth_neighbour_distance(z, params.k)
    rng = np.random.default_rng(params.seed)
    pick = np.sort(rng.choice(n, params.max_reference, replace=False))
    ref = z[pick]
    # a sampled row would find itself at distance 0: score sampled rows against the others
    out = kth_neighbour_distance(z, params.k, ref, self_in_reference=False)
    out[pick] = kth_neighbour_distance(ref, params.k)
    return out


def _iforest(z: np.ndarray, params: AnomalyParams) -> np.ndarray:
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=params.n_estimators, random_state=params.seed, n_jobs=1)
    forest.fit(z)
    return -forest.score_samples(z)


def score_vectors(x: np.ndarray, methods: Sequence[str] = METHODS, params: AnomalyParams | None = None,
                  extra: np.ndarray | None = None) -> dict[str, AnomalyScores]:
    """Anomaly scores of every row of ``x`` by each method.

    Parameters
    ----------
    x : array ``[n, d]``
        Embedding vectors (any norm; normalised here).
    methods : sequence of str
        Names from :data:`METHODS`.
    params : AnomalyParams, optional
    extra : array ``[n, m]``, optional
        Further columns (e.g. trusted morphometrics; NaN allowed) appended after the PCA.

    Returns
    -------
    dict
        Method -> :class:`AnomalyScores`, rows in the order of ``x``.

    Raises
    ------
    features.errors.InputError
        Unknown method, fewer than :data:`MIN_VECTORS` rows, or non-finite vectors.
    """
    params = params or AnomalyParams()
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"unknown anomaly method {', '.join(unknown)}; known: {', '.join(METHODS)}")
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < MIN_VECTORS:
        raise InputError(f"anomaly scores need at least {MIN_VECTORS} vectors, got {x.shape[0] if x.ndim else 0}")
    if not np.isfinite(x).all():
        raise InputError("anomaly scores: some vectors hold NaN or inf")
    if params.k < 1 or params.k >= x.shape[0]:
        raise InputError(f"k must be in [1, {x.shape[0] - 1}], got {params.k}")
    z = reduce(x, params, extra)
    out = {}
    for method in methods:
        raw = _iforest(z, params) if method == "iforest" else _knn(z, params)
        out[method] = AnomalyScores(method, raw, to_rank(raw))
    return out
