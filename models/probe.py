"""Linear probe on stored embeddings: standardised features, regularisation chosen on validation.

The probe is multinomial logistic regression (scikit-learn, L-BFGS) on the concatenation of the CLS
token and the patch-token mean of a frozen encoder (Oquab et al. 2023, sec. 7, use the same
concatenation for DINOv2's linear evaluation). Two traps of the research code are avoided:

* features are *standardised* per dimension (zero mean, unit variance on the training split), not
  unit-normalised per vector, so the L2 penalty treats every dimension alike;
* the inverse regularisation strength ``C`` is chosen on the validation split from a logarithmic grid
  (one fixed ``C`` under- or over-regularises depending on the encoder and the sample size).

The fitted probe is stored as plain arrays (``.npz``: mean, scale, coef, intercept), never as a pickle,
and predicts with :meth:`LinearProbe.predict_proba` without scikit-learn.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import TrainingError
from models.metrics import balanced_accuracy

__all__ = ["DEFAULT_CS", "LinearProbe", "cross_validate_probe", "fit_probe"]

DEFAULT_CS: tuple[float, ...] = tuple(float(c) for c in np.logspace(-4, 2, 13))
"""Grid of inverse regularisation strengths (1e-4 ... 1e2, half a decade apart)."""


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class LinearProbe:
    """A fitted probe: ``logits = ((x - mean) / scale) @ coef.T + intercept``.

    Attributes
    ----------
    mean, scale : numpy.ndarray, shape (D,)
        Standardisation fitted on the training split (scale 1 for constant dimensions).
    coef : numpy.ndarray, shape (K, D)
    intercept : numpy.ndarray, shape (K,)
    C : float
        The chosen inverse regularisation strength.
    val_scores : dict
        Validation balanced accuracy per ``C`` tried.
    """

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    C: float
    val_scores: dict[float, float] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.coef.shape[0])

    def logits(self, x: np.ndarray) -> np.ndarray:
        """``(N, K)`` logits of ``(N, D)`` features."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[1] != self.mean.shape[0]:
            raise TrainingError(f"probe expects {self.mean.shape[0]}-D features, got {x.shape[1]}-D")
        return ((x - self.mean) / self.scale) @ self.coef.T + self.intercept

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(N, K)`` class probabilities."""
        return _softmax(self.logits(x))

    def save(self, path: str | Path) -> Path:
        """Write the arrays to ``path`` (``.npz``)."""
        path = Path(path)
        cs = np.asarray(sorted(self.val_scores), dtype=np.float64)
        np.savez(path, mean=self.mean, scale=self.scale, coef=self.coef, intercept=self.intercept,
                 C=np.float64(self.C), cs=cs, scores=np.asarray([self.val_scores[c] for c in cs]))
        return path

    @classmethod
    def load(cls, path: str | Path) -> LinearProbe:
        """Read a probe written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as z:
            return cls(z["mean"], z["scale"], z["coef"], z["intercept"], float(z["C"]),
                       {float(c): float(s) for c, s in zip(z["cs"], z["scores"])})


def _weights(clf: Any, k: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """``(K, D)`` weights and ``(K,)`` intercepts of a fitted scikit-learn logistic regression."""
    coef = np.zeros((k, d))
    intercept = np.zeros(k)
    if clf.coef_.shape[0] == 1:  # binary: sigmoid(w.x + b) == softmax([-z/2, z/2])
        a, b = clf.classes_
        coef[b], intercept[b] = clf.coef_[0] / 2, clf.intercept_[0] / 2
        coef[a], intercept[a] = -clf.coef_[0] / 2, -clf.intercept_[0] / 2
    else:
        coef[clf.classes_] = clf.coef_
        intercept[clf.classes_] = clf.intercept_
        missing = np.setdiff1d(np.arange(k), clf.classes_)
        intercept[missing] = -1e3  # a class absent from training is never predicted
    return coef, intercept


def fit_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    num_classes: int | None = None,
    Cs: Sequence[float] = DEFAULT_CS,
    class_weight: str | None = "balanced",
    max_iter: int = 2000,
    seed: int = 0,
) -> LinearProbe:
    """Fit the probe on the training split, choosing ``C`` by validation balanced accuracy.

    Parameters
    ----------
    x_train, x_val : numpy.ndarray, shape (N, D)
    y_train, y_val : numpy.ndarray of int
        Class indices ``0..K-1``.
    num_classes : int, optional
        ``K`` (default: the largest index seen plus one).
    Cs : sequence of float
        Candidate inverse regularisation strengths; ties go to the smaller ``C`` (stronger
        regularisation).
    class_weight : {"balanced", None}
        Weight classes inversely to their frequency (matches the balanced-accuracy target).
    max_iter : int
    seed : int

    Returns
    -------
    LinearProbe

    Raises
    ------
    TrainingError
        Non-finite features or fewer than two classes in training.
    """
    x_train = np.asarray(x_train, dtype=np.float64)
    x_val = np.asarray(x_val, dtype=np.float64)
    y_train = np.asarray(y_train, dtype=np.int64)
    y_val = np.asarray(y_val, dtype=np.int64)
    for name, x in (("training", x_train), ("validation", x_val)):
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            raise TrainingError(f"{int(bad.sum())} {name} embedding(s) hold NaN or inf (first row {int(np.argmax(bad))})")
    if len(np.unique(y_train)) < 2:
        raise TrainingError("the probe's training split holds fewer than two classes")
    k = int(num_classes or max(y_train.max(), y_val.max() if len(y_val) else 0) + 1)
    mean = x_train.mean(axis=0)
    scale = x_train.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    xs_train = (x_train - mean) / scale
    xs_val = (x_val - mean) / scale
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    best: tuple[float, float, Any] | None = None
    scores: dict[float, float] = {}
    # ascending C with warm starts: each fit starts from the more regularised solution before it.
    clf = LogisticRegression(class_weight=class_weight, max_iter=max_iter, random_state=seed, warm_start=True)
    # one BLAS/OpenMP thread: L-BFGS on a few thousand rows is latency-bound, and oversubscribed
    # threads made it ~20x slower on a shared 2-core machine (docs/benchmarks_training.md)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for C in sorted(float(c) for c in Cs):
            clf.set_params(C=C)
            clf.fit(xs_train, y_train)
            coef, intercept = _weights(clf, k, xs_train.shape[1])
            pred = np.argmax(xs_val @ coef.T + intercept, axis=1)
            score = balanced_accuracy(y_val, pred) if len(y_val) else 0.0
            scores[C] = score
            if best is None or score > best[0] + 1e-12:
                best = (score, C, (coef, intercept))
    assert best is not None
    _, C, (coef, intercept) = best
    return LinearProbe(mean=mean, scale=scale, coef=coef, intercept=intercept, C=C, val_scores=scores)


def cross_validate_probe(
    x: np.ndarray,
    y: np.ndarray,
    groups: Sequence[str] | None = None,
    *,
    n_splits: int = 5,
    seed: int = 0,
    Cs: Sequence[float] = DEFAULT_CS,
) -> dict[str, Any]:
    """Nested cross-validated balanced accuracy of the probe.

    The outer loop is a stratified group k-fold (duplicate groups never straddle folds); in each outer
    training part, one inner stratified group fold (a quarter) is held out to choose ``C``, so the
    outer test fold never influences the choice.

    Returns
    -------
    dict
        ``balanced_accuracy`` (mean over folds), ``std``, ``folds`` (per-fold scores) and ``C``
        (chosen per fold).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    x = np.asarray(x)
    y = np.asarray(y, dtype=np.int64)
    g = np.asarray(groups if groups is not None else np.arange(len(y)).astype(str))
    outer = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    scores: list[float] = []
    chosen: list[float] = []
    k = int(y.max() + 1)
    for train_idx, test_idx in outer.split(x, y, g):
        inner = StratifiedGroupKFold(n_splits=4, shuffle=True, random_state=seed)
        fit_idx, val_idx = next(inner.split(x[train_idx], y[train_idx], g[train_idx]))
        tr, va = train_idx[fit_idx], train_idx[val_idx]
        probe = fit_probe(x[tr], y[tr], x[va], y[va], num_classes=k, Cs=Cs, seed=seed)
        pred = probe.predict_proba(x[test_idx]).argmax(axis=1)
        scores.append(balanced_accuracy(y[test_idx], pred))
        chosen.append(probe.C)
    return {"balanced_accuracy": float(np.mean(scores)), "std": float(np.std(scores)),
            "folds": scores, "C": chosen, "n": len(y), "n_splits": n_splits}
