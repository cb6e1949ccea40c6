"""Low-dimensional maps of embeddings: PCA, a seeded 2-D UMAP, and what a UMAP subsample costs.

* :func:`pca_map`: principal components (Pearson 1901; Hotelling 1933) of the centred vectors through
  :class:`sklearn.decomposition.PCA` (full SVD, signs fixed by scikit-learn's ``svd_flip``), with the
  components and the explained variance.
* :func:`umap_map`: UMAP (McInnes, Healy & Melville 2018, arXiv:1802.03426) through ``umap-learn``,
  seeded (which makes umap-learn single-threaded). Above ``max_fit`` vectors it is fitted on a seeded
  random subsample of ``max_fit`` and the rest are placed by ``UMAP.transform`` (nearest neighbours
  among the fitted points); :func:`neighbourhood_preservation` measures what that costs.
* :func:`neighbourhood_preservation`: the mean fraction of each point's ``k`` nearest neighbours in
  the original space that are also among its ``k`` nearest in the map (k-NN recall, as in Kobak &
  Berens 2019), on a seeded sample of query points.

umap-learn compiles its kernels with numba on the first fit in a process (seconds to a minute), so
callers fit once per run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["UMAP_MAX_FIT", "PCAMap", "UMAPMap", "neighbourhood_preservation", "pca_map", "umap_map"]

UMAP_MAX_FIT = 100_000
"""Above this many vectors UMAP is fitted on a subsample of this size and the rest transformed.

Measured (docs/benchmarks_analysis.md): a full fit of 100,000 384-D vectors takes ~100 s on 2 cores
and keeps 0.074 of the 10 nearest neighbours; fitting 20,000 of them and transforming the rest takes
35 s and keeps 0.035. Below this size the full fit is worth its time."""


@dataclass(frozen=True)
class PCAMap:
    """The coordinates of every vector on the top ``k`` components, and the components themselves."""

    coords: np.ndarray
    """``(n, k)`` float32 projections."""
    components: np.ndarray
    """``(k, d)`` unit principal axes."""
    explained_variance: np.ndarray
    """``(k,)`` variance along each axis."""
    explained_variance_ratio: np.ndarray
    """``(k,)`` fraction of the total variance."""
    mean: np.ndarray
    """``(d,)`` the centre the projections are taken from."""


@dataclass(frozen=True)
class UMAPMap:
    """2-D UMAP coordinates and how they were made."""

    coords: np.ndarray
    """``(n, 2)`` float32."""
    fitted: np.ndarray
    """``(n,)`` bool: in the fit sample (True) or placed by ``transform`` (False)."""
    n_neighbors: int
    min_dist: float
    seed: int


def pca_map(vectors: np.ndarray, k: int = 10) -> PCAMap:
    """The top ``min(k, n, d)`` principal components of ``vectors`` ``(n, d)``.

    Raises
    ------
    ValueError
        Fewer than 2 vectors, or non-finite values.
    """
    from sklearn.decomposition import PCA

    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"PCA needs at least 2 vectors; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("PCA: the vectors hold NaN or infinite values")
    k = int(min(k, x.shape[0], x.shape[1]))
    pca = PCA(n_components=k, svd_solver="full").fit(x)
    return PCAMap(pca.transform(x).astype(np.float32), pca.components_.astype(np.float32),
                  pca.explained_variance_, pca.explained_variance_ratio_, pca.mean_.astype(np.float32))


def umap_map(vectors: np.ndarray, *, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1,
             max_fit: int = UMAP_MAX_FIT) -> UMAPMap:
    """A seeded 2-D UMAP of ``vectors`` ``(n, d)`` (euclidean), fitted on at most ``max_fit`` of them.

    ``n_neighbors`` is capped at ``n - 1``. Fewer than 4 vectors cannot make a neighbour graph:
    every coordinate is NaN then (and ``fitted`` False), never a made-up layout.
    """
    import umap

    x = np.asarray(vectors, dtype=np.float32)
    n = len(x)
    if n < 4:
        return UMAPMap(np.full((n, 2), np.nan, np.float32), np.zeros(n, bool), n_neighbors, min_dist, seed)
    rng = np.random.default_rng(seed)
    fitted = np.zeros(n, bool)
    fitted[rng.choice(n, size=min(n, max_fit), replace=False)] = True
    nn = int(min(n_neighbors, fitted.sum() - 1))
    model = umap.UMAP(n_components=2, n_neighbors=nn, min_dist=min_dist, random_state=seed, n_jobs=1)
    coords = np.empty((n, 2), np.float32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs.*", category=UserWarning)
        coords[fitted] = model.fit_transform(x[fitted])
        if (~fitted).any():
            coords[~fitted] = model.transform(x[~fitted])
    return UMAPMap(coords, fitted, nn, min_dist, seed)


def neighbourhood_preservation(high: np.ndarray, low: np.ndarray, *, k: int = 10, n_query: int = 1000,
                               seed: int = 0) -> float:
    """Mean fraction of the ``k`` nearest neighbours in ``high`` kept among the ``k`` nearest in ``low``.

    1 means the map keeps every neighbourhood; a random layout gives about ``k / n``. Neighbours are
    exact euclidean (:class:`sklearn.neighbors.NearestNeighbors`), the query point itself excluded,
    over a seeded sample of ``min(n_query, n)`` query points. NaN for fewer than ``k + 2`` points.
    """
    from sklearn.neighbors import NearestNeighbors

    high = np.asarray(high, dtype=np.float32)
    low = np.asarray(low, dtype=np.float32)
    n = len(high)
    if n < k + 2:
        return float("nan")
    q = np.random.default_rng(seed).choice(n, size=min(n_query, n), replace=False)
    a = NearestNeighbors(n_neighbors=k + 1).fit(high).kneighbors(high[q], return_distance=False)[:, 1:]
    b = NearestNeighbors(n_neighbors=k + 1).fit(low).kneighbors(low[q], return_distance=False)[:, 1:]
    return float(np.mean([len(set(r) & set(s)) / k for r, s in zip(a, b)]))
