"""Statistics of the representation analysis: rank correlations with error bars, FDR, grouped CV R^2.

* :func:`spearman_ci`: Spearman's rank correlation (Spearman 1904) with a percentile bootstrap 95 %
  interval (Efron 1979; Efron & Tibshirani 1993, ch. 13) and a two-sided permutation p-value (the ranks
  of one variable shuffled; Good 2005), both seeded.
* :func:`bh_qvalues`: Benjamini & Hochberg (1995) adjusted p-values (q) over a grid of tests, through
  :func:`scipy.stats.false_discovery_control`, NaN p-values left out.
* :func:`grouped_folds` and :func:`grouped_cv_r2`: out-of-fold R^2 of a ridge regression (Hoerl &
  Kennard 1970; penalty chosen by efficient leave-one-out inside each training fold, :class:`sklearn.
  linear_model.RidgeCV`) whose folds keep every duplicate group whole, so a near-duplicate never sits on
  both sides; the interval is a bootstrap of the galaxies' out-of-fold predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import false_discovery_control, rankdata

__all__ = [
    "ALPHAS",
    "Estimate",
    "bh_qvalues",
    "bootstrap_r2",
    "grouped_cv_r2",
    "grouped_folds",
    "oof_predictions",
    "spearman_ci",
]

ALPHAS: tuple[float, ...] = tuple(10.0 ** k for k in range(-3, 7))
"""Ridge penalties :func:`grouped_cv_r2` chooses from (features centred, not scaled)."""


@dataclass(frozen=True)
class Estimate:
    """A statistic with its 95 % interval and (where one is defined) its p-value; NaN when undefined."""

    value: float
    ci_low: float
    ci_high: float
    p: float
    n: int


_NAN = float("nan")


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (NaN for a constant row)."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=-1) / den, np.nan)


_CHUNK_CELLS = 20_000_000
"""Resamples are processed in blocks of about this many (resample, galaxy) cells (bounded memory)."""


def _rank_groups(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sort order of ``x``, the start of each run of equal values in it, and each point's run."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    new = np.r_[True, xs[1:] != xs[:-1]]
    group = np.empty(len(x), dtype=np.int64)
    group[order] = np.cumsum(new) - 1
    return order, np.flatnonzero(new), group


def _resample_ranks(counts: np.ndarray, order: np.ndarray, starts: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Average ranks each point takes in resamples given as multiplicities ``counts`` ``(B, n)``.

    A point drawn ``c`` times, after ``b`` drawn points of smaller value, holds the ranks
    ``b + 1 .. b + c`` (ties: the whole run of equal values), so its average rank is ``b + (c + 1) / 2``:
    what :func:`scipy.stats.rankdata` gives the resample, in O(n) per resample instead of a sort.
    """
    run = np.add.reduceat(counts[:, order], starts, axis=1)
    before = np.cumsum(run, axis=1) - run
    return (before + (run + 1) / 2)[:, group]


def _weighted_pearson(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` and ``b`` with multiplicities ``w`` (NaN if constant)."""
    tot = w.sum(axis=-1, keepdims=True)
    a = a - (w * a).sum(axis=-1, keepdims=True) / tot
    b = b - (w * b).sum(axis=-1, keepdims=True) / tot
    den = np.sqrt((w * a * a).sum(axis=-1) * (w * b * b).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12 * tot[..., 0] ** 3, (w * a * b).sum(axis=-1) / den, np.nan)


def spearman_ci(x: np.ndarray, y: np.ndarray, *, n_boot: int = 1000, n_perm: int = 1000,
                seed: int = 0, confidence: float = 0.95) -> Estimate:
    """Spearman's rho of ``x`` and ``y`` with a bootstrap interval and a permutation p-value.

    rho is the Pearson correlation of the average ranks (ties share their mean rank). The interval is
    the percentile bootstrap: ``n_boot`` resamples of the pairs with replacement, re-ranked each time
    (in O(n) per resample from the multiplicities, :func:`_resample_ranks`), and the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of their rho (resamples whose rho
    is undefined, a constant resample, are left out; :func:`scipy.stats.bootstrap` would re-rank each
    resample in O(n log n) and has no way to drop them, hence the project's own). The p-value is two-sided:
    ``(1 + #{|rho_perm| >= |rho|}) / (1 + n_perm)`` over ``n_perm`` permutations of ``y``'s ranks,
    so it is never 0.

    Parameters
    ----------
    x, y : numpy.ndarray
        Paired samples; pairs where either is NaN or infinite are dropped first.
    n_boot, n_perm : int
        Bootstrap resamples and permutations.
    seed : int
        Seeds both, so a result is reproducible.
    confidence : float
        Coverage of the interval.

    Returns
    -------
    Estimate
        ``value`` rho, ``ci_low`` / ``ci_high``, ``p``, ``n`` pairs used. Fewer than 3 pairs, or a
        constant variable: every number NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Estimate(_NAN, _NAN, _NAN, _NAN, n)
    rx, ry = rankdata(x), rankdata(y)
    rho = float(_pearson_rows(rx, ry))
    rng = np.random.default_rng(seed)
    gx, gy = _rank_groups(x), _rank_groups(y)
    chunk = max(1, _CHUNK_CELLS // n)
    boot = []
    for lo in range(0, n_boot, chunk):
        b = min(chunk, n_boot - lo)
        idx = rng.integers(0, n, size=(b, n))
        counts = np.bincount((idx + n * np.arange(b)[:, None]).ravel(), minlength=b * n).reshape(b, n)
        boot.append(_weighted_pearson(_resample_ranks(counts, *gx), _resample_ranks(counts, *gy),
                                      counts.astype(np.float64)))
    boot = np.concatenate(boot) if boot else np.array([])
    boot = boot[np.isfinite(boot)]
    a = (1 - confidence) / 2
    lo_ci, hi_ci = (np.quantile(boot, [a, 1 - a]) if len(boot) else (_NAN, _NAN))
    hits = 0
    for lo in range(0, n_perm, chunk):
        b = min(chunk, n_perm - lo)
        null = _pearson_rows(np.broadcast_to(rx, (b, n)), rng.permuted(np.broadcast_to(ry, (b, n)), axis=1))
        hits += int((np.abs(null) >= abs(rho) - 1e-12).sum())
    p = (1 + hits) / (1 + n_perm)
    return Estimate(rho, float(lo_ci), float(hi_ci), float(p), n)


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg (1995) q-values of a family of p-values.

    ``q_(i) = min_{j >= i} m p_(j) / j`` over the ``m`` finite p-values sorted ascending, capped at 1;
    rejecting every test with ``q <= alpha`` controls the false discovery rate at ``alpha`` for
    independent or positively dependent tests. NaN p-values (an undefined test) stay NaN and do not
    count in ``m``. An empty input gives an empty array.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = false_discovery_control(p[ok], method="bh")
    return q


def grouped_folds(groups: np.ndarray, n_folds: int = 5, *, seed: int = 0) -> np.ndarray:
    """A fold index per sample such that every group lies in one fold.

    Groups are shuffled (seeded) and dealt to the fold with the fewest samples so far, largest group
    first, so folds have near-equal sizes (the rule of :class:`sklearn.model_selection.GroupKFold`,
    with a seeded order among groups of equal size). ``None`` / empty groups: pass each sample its own
    group (e.g. its galaxy id).

    Raises
    ------
    ValueError
        Fewer groups than folds, or ``n_folds < 2``.
    """
    groups = np.asarray(groups)
    uniq, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if n_folds < 2 or len(uniq) < n_folds:
        raise ValueError(f"need at least {max(n_folds, 2)} groups for {n_folds} folds; got {len(uniq)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    order = order[np.argsort(-counts[order], kind="stable")]
    sizes = np.zeros(n_folds, dtype=np.int64)
    fold_of_group = np.empty(len(uniq), dtype=np.int64)
    for g in order:
        f = int(np.argmin(sizes))
        fold_of_group[g] = f
        sizes[f] += counts[g]
    return fold_of_group[inverse]


def oof_predictions(features: np.ndarray, target: np.ndarray, folds: np.ndarray,
                    alphas: tuple[float, ...] = ALPHAS) -> np.ndarray:
    """Out-of-fold predictions of a ridge regression (penalty chosen in each training fold).

    Each fold is predicted by a :class:`sklearn.linear_model.RidgeCV` (penalty by efficient
    leave-one-out on the training folds) fitted on the other folds. Features are centred on the
    training folds but not scaled: an embedding's directions of large variance are its signal, and
    scaling every dimension to unit variance would let hundreds of noise dimensions drown it.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    pred = np.empty_like(y)
    for f in np.unique(folds):
        test = folds == f
        model = make_pipeline(StandardScaler(with_std=False), RidgeCV(alphas=alphas))
        model.fit(x[~test], y[~test])
        pred[test] = model.predict(x[test])
    return pred


def _r2(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """R^2 = 1 - SSE / SST along the last axis (NaN when the target is constant)."""
    sse = ((y - pred) ** 2).sum(axis=-1)
    sst = ((y - y.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sst > 0, 1 - sse / sst, np.nan)


def bootstrap_r2(y: np.ndarray, preds: list[np.ndarray], *, n_boot: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> list[tuple[float, float]]:
    """Percentile bootstrap intervals of the R^2 of each prediction, on the SAME resamples of galaxies.

    Kept rather than :func:`scipy.stats.bootstrap`, which draws new resamples per call: the shared
    draws are what make :func:`grouped_cv_r2`'s differences of two feature sets paired.

    Returns one ``(low, high)`` per entry of ``preds``; the shared resamples make differences of two
    entries' R^2 paired (see :func:`grouped_cv_r2`).
    """
    y = np.asarray(y, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, len(y), size=(n_boot, len(y)))
    a = (1 - confidence) / 2
    out = []
    for pr in preds:
        r = _r2(y[idx], np.asarray(pr)[idx])
        r = r[np.isfinite(r)]
        out.append(tuple(float(v) for v in np.quantile(r, [a, 1 - a])) if len(r) else (_NAN, _NAN))
    return out


def grouped_cv_r2(features: dict[str, np.ndarray], target: np.ndarray, groups: np.ndarray, *,
                  n_folds: int = 5, n_boot: int = 1000, seed: int = 0,
                  reference: str | None = None) -> dict[str, Estimate]:
    """Cross-validated R^2 of ``target`` from each feature set, with folds grouped by ``groups``.

    The pooled out-of-fold R^2 (``1 - SSE / SST`` over every galaxy's out-of-fold prediction) of a
    ridge regression (:func:`oof_predictions`) for each named feature set, on the same folds and the
    same galaxies, with percentile bootstrap intervals over galaxies. With ``reference``, also
    ``<name>-minus-<reference>``: the paired difference of R^2 on the same resamples, and its
    bootstrap p-value ``P(difference <= 0)`` (one-sided: does the feature set beat the reference?).

    Parameters
    ----------
    features : dict of str to numpy.ndarray
        ``(n, d_k)`` feature matrices on the same ``n`` galaxies.
    target : numpy.ndarray
        ``(n,)``, finite.
    groups : numpy.ndarray
        Duplicate group of each galaxy (its own id when it has none).

    Returns
    -------
    dict of str to Estimate
        ``p`` is NaN for the plain R^2 (no test is made).
    """
    y = np.asarray(target, dtype=np.float64)
    folds = grouped_folds(groups, n_folds, seed=seed)
    names = list(features)
    preds = [oof_predictions(features[k], y, folds) for k in names]
    cis = bootstrap_r2(y, preds, n_boot=n_boot, seed=seed)
    out = {k: Estimate(float(_r2(y, p)), lo, hi, _NAN, len(y)) for k, p, (lo, hi) in zip(names, preds, cis)}
    if reference is not None:
        idx = np.random.default_rng(seed).integers(0, len(y), size=(n_boot, len(y)))
        ref = _r2(y[idx], preds[names.index(reference)][idx])
        a = 0.025
        for k, pr in zip(names, preds):
            if k == reference:
                continue
            d = _r2(y[idx], pr[idx]) - ref
            d = d[np.isfinite(d)]
            lo, hi = np.quantile(d, [a, 1 - a]) if len(d) else (_NAN, _NAN)
            p = (1 + int((d <= 0).sum())) / (1 + len(d)) if len(d) else _NAN
            out[f"{k}-minus-{reference}"] = Estimate(out[k].value - out[reference].value, float(lo), float(hi),
                                                    float(p), len(y))
    return out
