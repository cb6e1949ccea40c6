"""Split conformal prediction sets over a trained classifier's (calibrated) probabilities, with MAPIE.

Split conformal prediction (Vovk, Gammerman & Shafer 2005; Angelopoulos & Bates 2023, "Conformal
Prediction: A Gentle Introduction") turns a classifier's probabilities into a set of classes that holds
the true class with probability at least ``1 - alpha``, given conformalization galaxies exchangeable with
the test galaxies and disjoint from everything that fitted the model. MAPIE's
``SplitConformalClassifier`` (prefit) does the quantile step; the conformity scores are ``lac``
(``1 - p_y``; Sadinle, Lei & Wasserman 2019) and ``aps`` (cumulative sorted mass; Romano, Sesia &
Candes 2020).

* **Marginal** sets: one quantile over all conformalization galaxies; coverage holds on average over
  classes, and a rare class can be covered far less (the research code: 0.905 overall, ~0.63 Disturbed).
* **Class-conditional** sets (label-conditional, Vovk 2012 "Conditional validity of inductive conformal
  predictors"): MAPIE 1.x has no Mondrian class, so each true class is conformalized on its own (a
  MAPIE conformalizer per class, fitted on the galaxies of that class), and class ``k`` enters a set iff
  the conformalizer of class ``k`` puts it there. Coverage then holds per class.

MAPIE accepts only ``lac`` for a binary target, and the galaxies of one class are one: class-conditional
``aps`` sets (and any ``aps`` sets of a two-class label) are reported as unavailable, with MAPIE's
reason, not computed some other way. ``aps`` sets keep MAPIE's default ``include_last_label=True``
(conservative: coverage above ``1 - alpha``). The sets stored per galaxy are the ``lac`` ones.

A class with fewer conformalization galaxies than MAPIE needs (``n >= 1 / alpha``; below about that the
exact quantile is infinite anyway) is always included in the class-conditional sets - coverage is kept,
the set size pays - and named in :attr:`Conformalizer.flags`; a class absent from the conformalization
galaxies likewise. Nothing here raises on small data.

The conformalization galaxies are one half of the validation split (:func:`val_halves`): the other half
fits the temperature, so the two never share a galaxy, and neither shares one with train or test.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

__all__ = [
    "SCORES",
    "Conformalizer",
    "ProbabilityPassThrough",
    "clopper_pearson",
    "coverage_table_md",
    "set_report",
    "val_halves",
]

SCORES: tuple[str, ...] = ("lac", "aps")
"""Conformity scores used (MAPIE names)."""


class ProbabilityPassThrough(ClassifierMixin, BaseEstimator):
    """A fitted sklearn classifier whose input *is* the ``(N, K)`` probability matrix (for MAPIE prefit)."""

    def __init__(self, n_classes: int = 2) -> None:
        self.n_classes = n_classes

    def fit(self, x: Any = None, y: Any = None) -> ProbabilityPassThrough:
        self.classes_ = np.arange(self.n_classes)
        self.n_features_in_ = self.n_classes
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x).argmax(axis=1)


def val_halves(galaxy_ids: Sequence[str], y: np.ndarray, groups: Sequence[str | None], *,
               seed: int = 0) -> np.ndarray:
    """Split the validation galaxies in two, group-aware and stratified: ``True`` = conformalization half.

    Duplicate groups (``None``: the galaxy alone) stay together; per class (the group's most common
    label), groups are shuffled with ``seed`` and each goes to the half with fewer galaxies of that class
    so far (ties: the temperature half first), so both halves hold about half of every class.
    """
    y = np.asarray(y)
    members: dict[str, list[int]] = defaultdict(list)
    for i, (gid, g) in enumerate(zip(galaxy_ids, groups)):
        members[g or gid].append(i)
    by_class: dict[int, list[str]] = defaultdict(list)
    for g, idx in members.items():
        labels, counts = np.unique(y[idx], return_counts=True)
        by_class[int(labels[counts.argmax()])].append(g)
    rng = np.random.default_rng(seed)
    conf = np.zeros(len(y), dtype=bool)
    for c in sorted(by_class):
        units = sorted(by_class[c])
        sizes = [0, 0]
        for k in rng.permutation(len(units)):
            u = units[k]
            half = int(sizes[1] < sizes[0])
            sizes[half] += len(members[u])
            conf[members[u]] = bool(half)
    return conf


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of ``k`` successes in ``n`` (Clopper & Pearson 1934); NaNs for ``n = 0``.

    SciPy's ``binomtest(k, n).proportion_ci(method="exact")`` (0 and 1 at the ends, as the beta
    quantiles this function computed itself before).
    """
    from scipy.stats import binomtest

    if n == 0:
        return float("nan"), float("nan")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def _mapie(n_classes: int, alpha: float, score: str, probs: np.ndarray, y: np.ndarray) -> Any:
    from mapie.classification import SplitConformalClassifier

    m = SplitConformalClassifier(ProbabilityPassThrough(n_classes).fit(), confidence_level=1 - alpha,
                                 conformity_score=score, prefit=True)
    with warnings.catch_warnings():  # one class's galaxies hold fewer labels than the model: by design here
        warnings.filterwarnings("ignore", message=".*conformalization dataset has less labels")
        return m.conformalize(probs, y)


def _min_n(alpha: float) -> int:
    """MAPIE needs more conformity scores than ``1 / alpha`` and ``1 / (1 - alpha)``."""
    return int(np.floor(max(1 / alpha, 1 / (1 - alpha)))) + 1


@dataclass
class Conformalizer:
    """Marginal and class-conditional split conformal sets of one score, fitted on conformalization galaxies.

    Attributes
    ----------
    score : {"lac", "aps"}
    alpha : float
        Target miscoverage (sets hold the true class with probability >= ``1 - alpha``).
    n_classes : int
    n : int
        Conformalization galaxies.
    n_per_class : list of int
    flags : list of str
        One line per class that is always included (absent, or fewer than MAPIE's minimum) and when the
        marginal sets could not be conformalized (then they are every class).
    unavailable : dict
        ``"marginal"`` / ``"class_conditional"`` -> why MAPIE refused (it takes only ``lac`` for a binary
        target, and a single class's galaxies are one: class-conditional ``aps`` is never available);
        :meth:`marginal_sets` / :meth:`class_sets` then return None.
    """

    score: str
    alpha: float
    n_classes: int
    n: int = 0
    n_per_class: list[int] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    _marginal: Any = None
    _per_class: dict[int, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, probs: np.ndarray, y: np.ndarray, *, alpha: float = 0.1, score: str = "lac",
            names: Sequence[str] | None = None) -> Conformalizer:
        """Conformalize on ``(probs, y)``: ``probs`` ``(N, K)`` (calibrated) probabilities, ``y`` class indices."""
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must lie in (0, 1); got {alpha}")
        probs = np.asarray(probs, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        k = probs.shape[1]
        names = list(names) if names is not None else [str(i) for i in range(k)]
        out = cls(score=score, alpha=float(alpha), n_classes=k, n=len(y),
                  n_per_class=np.bincount(y, minlength=k).tolist())
        need = _min_n(alpha)
        if len(y) >= need:
            try:
                out._marginal = _mapie(k, alpha, score, probs, y)
            except ValueError as exc:
                out.unavailable["marginal"] = f"{score}: MAPIE refused the marginal sets: {exc}"
                out.flags.append(out.unavailable["marginal"])
        else:
            out.flags.append(f"marginal: {len(y)} conformalization galaxies < {need} needed at alpha {alpha:g}: "
                             "every class in every set")
        for c in range(k):
            n_c = out.n_per_class[c]
            if n_c == 0:
                out.flags.append(f"class {names[c]!r} is absent from the conformalization galaxies: always in the "
                                 "class-conditional sets")
            elif n_c < need:
                out.flags.append(f"class {names[c]!r}: {n_c} conformalization galaxies < {need} needed at alpha "
                                 f"{alpha:g}: always in the class-conditional sets")
            elif "class_conditional" not in out.unavailable:
                try:
                    out._per_class[c] = _mapie(k, alpha, score, probs[y == c], y[y == c])
                except ValueError as exc:
                    out.unavailable["class_conditional"] = (f"{score}: MAPIE refused the galaxies of one class: "
                                                            f"{exc}")
                    out.flags.append(out.unavailable["class_conditional"])
                    out._per_class = {}
        return out

    def marginal_sets(self, probs: np.ndarray) -> np.ndarray | None:
        """``(N, K)`` bool: the marginal sets (None when MAPIE refused them)."""
        if "marginal" in self.unavailable:
            return None
        probs = np.asarray(probs, dtype=np.float64)
        if self._marginal is None or len(probs) == 0:
            return np.ones((len(probs), self.n_classes), dtype=bool)
        return np.asarray(self._marginal.predict_set(probs)[1][:, :, 0], dtype=bool)

    def class_sets(self, probs: np.ndarray) -> np.ndarray | None:
        """``(N, K)`` bool: class ``k`` is in a set iff class ``k``'s own conformalizer puts it there (None: refused)."""
        if "class_conditional" in self.unavailable:
            return None
        probs = np.asarray(probs, dtype=np.float64)
        out = np.ones((len(probs), self.n_classes), dtype=bool)
        if len(probs) == 0:
            return out
        for c, m in self._per_class.items():
            out[:, c] = np.asarray(m.predict_set(probs)[1][:, c, 0], dtype=bool)
        return out


def set_report(sets: np.ndarray, y: np.ndarray, names: Sequence[str], *, level: float = 0.95) -> dict[str, Any]:
    """Coverage and size of prediction sets on labelled galaxies.

    Returns
    -------
    dict
        ``coverage``, ``coverage_ci`` (Clopper-Pearson at ``level``), ``mean_size``, ``empty``,
        ``singleton`` (shares of sets), ``n``; ``per_class``: name -> ``n``, ``coverage``,
        ``coverage_ci``, ``mean_size``.
    """
    sets = np.asarray(sets, dtype=bool)
    y = np.asarray(y, dtype=np.int64)
    n = len(y)
    hit = sets[np.arange(n), y] if n else np.zeros(0, bool)
    size = sets.sum(axis=1) if n else np.zeros(0)
    nan = float("nan")
    out: dict[str, Any] = {
        "n": n, "coverage": float(hit.mean()) if n else nan, "coverage_ci": list(clopper_pearson(int(hit.sum()), n, level)),
        "mean_size": float(size.mean()) if n else nan, "empty": float((size == 0).mean()) if n else nan,
        "singleton": float((size == 1).mean()) if n else nan, "per_class": {},
    }
    for c, name in enumerate(names):
        m = y == c
        k = int(m.sum())
        out["per_class"][name] = {"n": k, "coverage": float(hit[m].mean()) if k else nan,
                                  "coverage_ci": list(clopper_pearson(int(hit[m].sum()), k, level)),
                                  "mean_size": float(size[m].mean()) if k else nan}
    return out


def coverage_table_md(score_report: dict[str, Any]) -> str:
    """A markdown table of marginal vs class-conditional coverage (95% CI) and mean set size per class."""
    m, c = score_report["marginal"], score_report["class_conditional"]
    if m is None or c is None:
        return "not available: " + "; ".join(score_report.get("flags", []))

    def cell(d: dict[str, Any]) -> str:
        lo, hi = d["coverage_ci"]
        return f"{d['coverage']:.3f} [{lo:.2f}, {hi:.2f}] | {d['mean_size']:.2f}"

    rows = ["| class | n | marginal coverage [95% CI] | size | class-conditional coverage [95% CI] | size |",
            "|---|---|---|---|---|---|"]
    rows += [f"| {name} | {d['n']} | {cell(d)} | {cell(c['per_class'][name])} |" for name, d in m["per_class"].items()]
    rows.append(f"| **all** | {m['n']} | {cell(m)} | {cell(c)} |")
    rows.append(f"\nempty sets: marginal {m['empty']:.3f}, class-conditional {c['empty']:.3f}; singletons: marginal "
                f"{m['singleton']:.3f}, class-conditional {c['singleton']:.3f}")
    if score_report.get("flags"):
        rows.append("\nflags: " + "; ".join(score_report["flags"]))
    return "\n".join(rows)
