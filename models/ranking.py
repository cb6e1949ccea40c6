"""Active learning on embeddings: rank galaxies by what a person marked, and pick what to show next.

The Astronomaly approach (Lochner & Bassett 2021, arXiv:2010.11202): a regressor on the galaxies'
features is trained on the person's labels (value 1 = what they are after, 0 = not; any value in
between is a grade), its prediction ``p`` over every galaxy is combined with the unsupervised anomaly
rank ``a`` as ``score = (1 - w) * p + w * a`` (``w = anomaly_weight``), and the galaxies are shown in
an *acquisition order* that mostly exploits the score but puts, every ``explore_every``-th place, the
unlabelled galaxy the model is least sure of (the spread of the forest's trees, or the Gaussian
process's predictive standard deviation, as in Protege, Walmsley et al. 2023).

Models (``model``): ``gp`` (a Gaussian process with an RBF + white kernel, as in Protege; the default, by
measurement: the best or level with the best on most benchmark sets and the best on real GZ1 pixels),
``rfc`` (a random forest *classifier* with balanced class weights: labels above 0.5 are the wanted
class, ``p`` is the trees' mean vote; the best on the synthetic survey's pixels) and ``rf`` (a random
forest regressor, Astronomaly's choice); ``docs/benchmarks_anomaly.md`` measures them.

Documented behaviour on thin label sets: an empty set is an :class:`~features.errors.InputError`; a
set holding one class only trains no model, and :attr:`Ranking.note` says so: only positives rank by
the cosine similarity to the labelled galaxies' mean vector; only negatives ("not these") keep the
anomaly order, each galaxy's anomaly rank scaled by one minus its cosine similarity (clipped to
[0, 1]) to the nearest negative, so what resembles the negatives sinks and the rest of the anomaly
order stays (the person has said nothing yet of what they want; ranking by the distance from the
negatives instead sent them to the most ordinary galaxies, ``docs/benchmarks_anomaly.md``).

"More like these" (:func:`more_like_these`): several positives, and optionally negatives, as one query,
the Rocchio vector ``mean(positives) - 0.5 * mean(negatives)`` of the normalised vectors (Rocchio 1971),
ranked by cosine similarity with the labelled galaxies left out.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from features.anomaly import normalise, to_rank
from features.errors import InputError

__all__ = ["MODELS", "Ranking", "RankingParams", "acquisition_order", "more_like_these", "rank_galaxies",
           "rocchio"]

MODELS: tuple[str, ...] = ("gp", "rfc", "rf")
"""The ranking models :func:`rank_galaxies` knows."""


@dataclass(frozen=True)
class RankingParams:
    """Parameters of a ranking (stored as JSON with it).

    Attributes
    ----------
    model : str
        One of :data:`MODELS`.
    anomaly_weight : float
        ``w`` in ``(1 - w) * prediction + w * anomaly rank``.
    explore_every : int
        Every ``explore_every``-th place of the acquisition order goes to the most uncertain unlabelled
        galaxy not yet placed (0: pure exploitation).
    n_estimators : int
        Trees of the ``rfc`` and ``rf`` models.
    seed : int
    """

    model: str = "gp"
    anomaly_weight: float = 0.2
    explore_every: int = 5
    n_estimators: int = 200
    seed: int = 0


@dataclass(frozen=True)
class Ranking:
    """One ranking of every galaxy (arrays in the order of the input rows).

    ``order`` holds row indices of the unlabelled galaxies in the order they should be shown;
    ``position[i]`` is row ``i``'s place in it (1-based; 0 for a labelled galaxy).
    """

    score: np.ndarray
    prediction: np.ndarray
    uncertainty: np.ndarray
    order: np.ndarray
    position: np.ndarray
    note: str = ""


def rocchio(z: np.ndarray, positives: Sequence[int], negatives: Sequence[int] = (), gamma: float = 0.5) -> np.ndarray:
    """The unit query vector ``mean(pos) - gamma * mean(neg)`` of the normalised rows ``z``."""
    if len(positives) == 0:
        raise InputError("more like these needs at least one positive galaxy")
    q = normalise(z[list(positives)]).mean(axis=0)
    if len(negatives):
        q = q - gamma * normalise(z[list(negatives)]).mean(axis=0)
    norm = float(np.linalg.norm(q))
    if norm == 0:
        raise InputError("the positives and negatives cancel out: no query direction is left")
    return (q / norm).astype(np.float32)


def more_like_these(x: np.ndarray, positives: Sequence[int], negatives: Sequence[int] = (), k: int = 10) -> np.ndarray:
    """Row indices of the ``k`` rows most like the positives (and unlike the negatives), labelled rows excluded."""
    z = normalise(x)
    sim = z @ rocchio(z, positives, negatives)
    sim[list(positives) + list(negatives)] = -np.inf
    k = min(k, int(np.isfinite(sim).sum()))
    top = np.argpartition(-sim, k - 1)[:k] if k > 0 else np.array([], int)
    return top[np.argsort(-sim[top], kind="stable")]


def acquisition_order(score: np.ndarray, uncertainty: np.ndarray, labelled: np.ndarray, explore_every: int) -> np.ndarray:
    """Unlabelled rows by score, every ``explore_every``-th place the most uncertain one not yet placed."""
    free = np.flatnonzero(~labelled)
    by_score = free[np.lexsort((free, -score[free]))]
    if explore_every <= 0:
        return by_score
    by_unc = free[np.lexsort((free, -uncertainty[free]))]
    placed = np.zeros(score.size, bool)
    out = np.empty(free.size, np.int64)
    i_s = i_u = 0
    for pos in range(free.size):
        explore = (pos + 1) % explore_every == 0
        if explore:
            while placed[by_unc[i_u]]:
                i_u += 1
            pick = by_unc[i_u]
        else:
            while placed[by_score[i_s]]:
                i_s += 1
            pick = by_score[i_s]
        placed[pick] = True
        out[pos] = pick
    return out


def _fit_predict(z: np.ndarray, idx: np.ndarray, y: np.ndarray, params: RankingParams) -> tuple[np.ndarray, np.ndarray]:
    if params.model == "rfc":
        from sklearn.ensemble import RandomForestClassifier

        forest = RandomForestClassifier(n_estimators=params.n_estimators, random_state=params.seed, n_jobs=1,
                                        class_weight="balanced_subsample")
        forest.fit(z[idx], (y > 0.5).astype(np.int64))
        col = list(forest.classes_).index(1)
        per_tree = np.stack([t.predict_proba(z)[:, col] for t in forest.estimators_])
        return per_tree.mean(axis=0), per_tree.std(axis=0)
    if params.model == "rf":
        from sklearn.ensemble import RandomForestRegressor

        forest = RandomForestRegressor(n_estimators=params.n_estimators, random_state=params.seed, n_jobs=1,
                                       min_samples_leaf=1)
        forest.fit(z[idx], y)
        per_tree = np.stack([t.predict(z) for t in forest.estimators_])
        return per_tree.mean(axis=0), per_tree.std(axis=0)
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    kernel = ConstantKernel(1.0) * RBF(length_scale=1.0) + WhiteKernel(0.1)
    gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=params.seed)
    with warnings.catch_warnings():  # a few dozen labels often put a kernel parameter at its bound: expected
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(z[idx], y)
    mean, std = gp.predict(z, return_std=True)
    return mean, std


def _nearest_similarity(zn: np.ndarray, ref: np.ndarray, cells: int = 2**24) -> np.ndarray:
    """Each row's largest dot product with a row of ``ref`` (cosine on unit rows), ``cells`` products at a time."""
    out = np.empty(zn.shape[0], np.float64)
    step = max(1, cells // max(ref.shape[0], 1))
    for start in range(0, zn.shape[0], step):
        out[start:start + step] = (zn[start:start + step] @ ref.T).max(axis=1)
    return out


def rank_galaxies(z: np.ndarray, anomaly_rank: np.ndarray, labelled: Sequence[int], values: Sequence[float],
                  params: RankingParams | None = None) -> Ranking:
    """Train the ranking model on the labels and rank every galaxy.

    Parameters
    ----------
    z : array ``[n, d]``
        The galaxies' features (e.g. :func:`features.anomaly.reduce` of their embeddings).
    anomaly_rank : array ``[n]``
        The anomaly rank in [0, 1] of each row.
    labelled : sequence of int
        Rows the person labelled (each once).
    values : sequence of float
        Their values (1 = interesting, 0 = not; grades in between).
    params : RankingParams, optional

    Returns
    -------
    Ranking

    Raises
    ------
    features.errors.InputError
        No labels, an unknown model, rows out of range or repeated, non-finite values.
    """
    params = params or RankingParams()
    if params.model not in MODELS:
        raise InputError(f"unknown ranking model {params.model!r}; known: {', '.join(MODELS)}")
    idx = np.asarray(labelled, np.int64)
    y = np.asarray(values, np.float64)
    n = z.shape[0]
    if idx.size == 0:
        raise InputError("no labels to learn from: label some galaxies first (astrovision label ID NAME)")
    if idx.size != y.size or idx.min() < 0 or idx.max() >= n or np.unique(idx).size != idx.size:
        raise InputError("labelled rows must be distinct rows of the set, one value each")
    if not np.isfinite(y).all():
        raise InputError("label values must be finite numbers")
    mask = np.zeros(n, bool)
    mask[idx] = True
    note = ""
    wanted = y > 0.5
    if np.unique(y).size == 1 or (params.model == "rfc" and np.unique(wanted).size == 1):
        zn = normalise(z)
        if wanted[0]:
            prediction = to_rank(zn @ normalise(zn[idx].mean(axis=0, keepdims=True))[0])
            how = "the similarity to the labelled galaxies' mean vector"
        else:
            nearest = np.clip(_nearest_similarity(zn, zn[idx]), 0.0, 1.0)
            prediction = np.asarray(anomaly_rank, np.float64) * (1.0 - nearest)
            how = "the anomaly rank, lowered by the cosine similarity to the nearest labelled galaxy"
        uncertainty = 1.0 - np.abs(2.0 * to_rank(prediction) - 1.0)
        note = f"every label is {'above' if wanted[0] else 'at most'} 0.5: no model trained; the prediction is {how}"
    else:
        prediction, uncertainty = _fit_predict(z, idx, y, params)
        lo, hi = float(y.min()), float(y.max())
        prediction = np.clip((prediction - lo) / (hi - lo), 0.0, 1.0)
    w = float(params.anomaly_weight)
    score = (1.0 - w) * prediction + w * np.asarray(anomaly_rank, np.float64)
    order = acquisition_order(score, uncertainty, mask, params.explore_every)
    position = np.zeros(n, np.int64)
    position[order] = np.arange(1, order.size + 1)
    return Ranking(score, prediction, uncertainty, order, position, note)
