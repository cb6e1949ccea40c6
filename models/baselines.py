"""Baselines measured in the same run, and the gate a classifier must pass against them.

A fixed accuracy floor (``1.5 / K``) tuned for the demo's ten classes says nothing about a binary label
on a few hundred real galaxies. The gate instead asks whether a model beats what no learning and cheap
pixels already get on *the same test galaxies*:

* ``majority``: the most common training class for every galaxy; its balanced accuracy is ``1 / K``.
* ``pixels``: multinomial logistic regression (:func:`models.probe.fit_probe`: standardised features,
  ``C`` chosen on the validation split) on :func:`pixel_features`, an 8 x 8 thumbnail of each channel
  plus the channel means and standard deviations of a 16 px stamp.

The comparison is a paired bootstrap of the test split (Efron & Tibshirani 1993, ch. 16): ``B``
resamples of the test galaxies with replacement, the same resample for the model and every baseline,
and the balanced accuracy difference on each. The gate passes when, for every baseline, the
``1 - confidence`` quantile of that difference is above zero (a one-sided test at ``confidence``).
The test split is the honest one for a gate: the validation split chose the model's epoch and the
baselines' ``C``, so both look better there than they are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "BASELINES",
    "PIXEL_STAMP",
    "Gate",
    "balanced_accuracy_interval",
    "balanced_accuracy_of",
    "bootstrap_balanced_accuracy",
    "gate",
    "majority_predictions",
    "pixel_features",
]

BASELINES: tuple[str, ...] = ("majority", "pixels")
"""The baselines every gate compares against."""

_BATCH_CELLS = 4_000_000
"""Galaxies x resamples that scipy's bootstrap evaluates at once (bounded memory for big test splits)."""

PIXEL_STAMP = 16
"""Side in pixels of the stamps :func:`pixel_features` reads."""


def pixel_features(stamps: np.ndarray) -> np.ndarray:
    """Cheap image statistics: an 8 x 8 thumbnail per channel, channel means and standard deviations.

    Parameters
    ----------
    stamps : numpy.ndarray
        ``(N, C, S, S)`` images (any dtype; ``S`` even), e.g. the uint8 stamps a
        :class:`models.data.GalaxyImageDataset` yields.

    Returns
    -------
    numpy.ndarray, shape (N, 64 C + 2 C), float32
        Block means of the ``S / 8`` squares (scaled to 0-1 for uint8), then per-channel mean and std.
        An empty input gives ``(0, 66 C)``.
    """
    x = np.asarray(stamps, dtype=np.float32)
    if np.asarray(stamps).dtype == np.uint8:
        x = x / 255.0
    n, c, h, w = x.shape
    if h % 8 or w % 8:
        raise ValueError(f"stamps must be a multiple of 8 pixels on a side; got {h} x {w}")
    thumb = x.reshape(n, c, 8, h // 8, 8, w // 8).mean(axis=(3, 5)).reshape(n, -1)
    stats = np.concatenate([x.mean(axis=(2, 3)), x.std(axis=(2, 3))], axis=1)
    return np.concatenate([thumb, stats], axis=1).astype(np.float32)


def majority_predictions(y_train: np.ndarray, n: int) -> np.ndarray:
    """``n`` predictions of the most common training class (ties: the smallest index)."""
    y_train = np.asarray(y_train, dtype=np.int64)
    top = int(np.bincount(y_train).argmax()) if len(y_train) else 0
    return np.full(n, top, dtype=np.int64)


def _balanced_accuracy(weights: np.ndarray, onehot: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Balanced accuracy per row of ``weights`` (galaxy multiplicities); classes absent from a row drop out."""
    total = weights @ onehot
    hits = weights @ (onehot * correct[:, None])
    present = total > 0
    recall = np.divide(hits, total, out=np.zeros_like(hits), where=present)
    return recall.sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def bootstrap_balanced_accuracy(
    y_true: np.ndarray, predictions: dict[str, np.ndarray], *, n_boot: int = 2000, seed: int = 0,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Balanced accuracy of several predictors on the same galaxies, with paired bootstrap replicates.

    The project's own resampling, not :func:`scipy.stats.bootstrap`: the gate and the fusion ablation
    need the REPLICATES of several predictors on the SAME draws (one-sided quantiles of every
    model-minus-baseline difference, each subset against the best single modality), while scipy's
    bootstrap returns one interval per call and draws anew each time.

    Parameters
    ----------
    y_true : numpy.ndarray of int
        True class index per galaxy.
    predictions : dict
        Name -> predicted class index per galaxy.
    n_boot : int
        Resamples (each draws ``len(y_true)`` galaxies with replacement; the same draw for every
        predictor, so their differences are paired).
    seed : int

    Returns
    -------
    point : dict
        Name -> balanced accuracy on the galaxies as given (mean recall over the classes present).
    replicates : dict
        Name -> ``(n_boot,)`` balanced accuracies of the resamples.
    """
    y = np.asarray(y_true, dtype=np.int64)
    n = len(y)
    if n == 0:
        nan = float("nan")
        return {k: nan for k in predictions}, {k: np.full(n_boot, np.nan) for k in predictions}
    onehot = np.eye(int(y.max()) + 1)[y]
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    ones = np.ones((1, n))
    point, reps = {}, {}
    for name, pred in predictions.items():
        correct = (np.asarray(pred, dtype=np.int64) == y).astype(np.float64)
        point[name] = float(_balanced_accuracy(ones, onehot, correct)[0])
        reps[name] = _balanced_accuracy(weights, onehot, correct)
    return point, reps


def balanced_accuracy_interval(
    y_true: np.ndarray, y_pred: np.ndarray, *, level: float = 0.95, n_boot: int = 2000, seed: int = 0,
) -> tuple[float, float, float]:
    """Balanced accuracy and its percentile bootstrap interval (Efron & Tibshirani 1993, ch. 13).

    The interval is :func:`scipy.stats.bootstrap` (``method="percentile"``, ``paired=True``: the
    galaxies are resampled with their true and predicted classes). Before issue 22 the project drew
    its own resamples (:func:`bootstrap_balanced_accuracy`): same method, other random draws, so an
    interval differs from an older registry row's by the Monte Carlo error of ``n_boot`` resamples.

    Parameters
    ----------
    y_true, y_pred : numpy.ndarray of int
        True and predicted class index per galaxy.
    level : float
        Central coverage of the interval, in (0, 1) (0.95: the 2.5th and 97.5th percentiles).
    n_boot, seed : int
        Resamples of the galaxies (with replacement) and their seed.

    Returns
    -------
    (point, low, high) : tuple of float
        NaN for an empty input; ``low == high == point`` for one galaxy.
    """
    from scipy.stats import bootstrap

    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1); got {level}")
    y = np.asarray(y_true, dtype=np.int64)
    pred = np.asarray(y_pred, dtype=np.int64)
    point = balanced_accuracy_of(y, pred)
    if len(y) < 2:
        return point, point, point
    res = bootstrap((y, pred), balanced_accuracy_of, n_resamples=n_boot, paired=True, vectorized=True,
                    confidence_level=level, method="percentile", batch=max(1, _BATCH_CELLS // len(y)),
                    random_state=np.random.default_rng(seed))
    return point, float(res.confidence_interval.low), float(res.confidence_interval.high)


def balanced_accuracy_of(y_true: np.ndarray, y_pred: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Mean recall over the classes present in ``y_true``, along ``axis`` (batched for scipy's bootstrap).

    Returns a float for 1-D input, NaN when it is empty.
    """
    y = np.moveaxis(np.asarray(y_true, dtype=np.int64), axis, -1)
    pred = np.moveaxis(np.asarray(y_pred, dtype=np.int64), axis, -1)
    if y.shape[-1] == 0:
        return float("nan")
    k = int(y.max()) + 1
    onehot = y[..., None] == np.arange(k)
    total = onehot.sum(axis=-2)
    hits = (onehot & (pred == y)[..., None]).sum(axis=-2)
    present = total > 0
    recall = np.divide(hits, total, out=np.zeros(total.shape), where=present)
    out = recall.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)
    return float(out) if np.ndim(out) == 0 else out


@dataclass
class Gate:
    """The outcome of :func:`gate`: pass or fail, and every number behind it.

    Attributes
    ----------
    passed : bool
    rule : str
        The rule in words (shown in the check metadata and the summaries).
    split : str
        The split the numbers come from (``"test"``).
    confidence : float
        One-sided confidence of each comparison.
    n : int
        Galaxies in that split.
    n_boot : int
    balanced_accuracy : float
        The model's.
    interval : (float, float)
        The model's central ``2 * confidence - 1`` bootstrap interval.
    baselines : dict
        Name -> ``balanced_accuracy``, ``interval``, ``difference`` (model minus baseline) and
        ``difference_lower`` (its ``1 - confidence`` quantile; the gate needs it above 0).
    reason : str
        One line: which baseline the model did not beat, or that it beat them all.
    """

    passed: bool
    rule: str
    split: str
    confidence: float
    n: int
    n_boot: int
    balanced_accuracy: float
    interval: tuple[float, float]
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the registry's ``gate_json``)."""
        d = asdict(self)
        d["interval"] = list(self.interval)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Gate:
        """The inverse of :meth:`as_dict`."""
        return cls(**{**d, "interval": tuple(d["interval"])})


def _quantiles(x: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    if not np.isfinite(x).any():
        return float("nan"), float("nan")
    a, b = np.nanquantile(x, [lo, hi])
    return float(a), float(b)


def gate(
    y_true: np.ndarray,
    model_pred: np.ndarray,
    baseline_preds: dict[str, np.ndarray],
    *,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    split: str = "test",
) -> Gate:
    """Does the model beat every baseline on the same galaxies? (paired bootstrap, one-sided).

    Parameters
    ----------
    y_true, model_pred : numpy.ndarray of int
        True and predicted class index per galaxy of ``split``.
    baseline_preds : dict
        Baseline name -> its predictions for the same galaxies.
    confidence : float
        In (0, 1); the gate needs the ``1 - confidence`` quantile of each difference above zero.
    n_boot, seed : int
        Bootstrap resamples and their seed.
    split : str
        Name of the split, for the record.

    Returns
    -------
    Gate
        An empty split fails with the reason said.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}")
    q = 1.0 - confidence
    rule = (f"{split} balanced accuracy beats each baseline ({', '.join(baseline_preds)}): the "
            f"{100 * q:g}th percentile of the paired bootstrap difference (model - baseline, "
            f"{n_boot} resamples of the {split} galaxies) is above 0")
    y = np.asarray(y_true, dtype=np.int64)
    point, reps = bootstrap_balanced_accuracy(y, {"model": model_pred, **baseline_preds}, n_boot=n_boot,
                                              seed=seed)
    out = Gate(passed=False, rule=rule, split=split, confidence=float(confidence), n=len(y), n_boot=int(n_boot),
               balanced_accuracy=point["model"], interval=_quantiles(reps["model"], q, 1 - q))
    if len(y) == 0:
        out.reason = f"the {split} split is empty"
        return out
    failed = []
    for name in baseline_preds:
        diff = reps["model"] - reps[name]
        lower = float(np.nanquantile(diff, q))
        out.baselines[name] = {"balanced_accuracy": point[name], "interval": list(_quantiles(reps[name], q, 1 - q)),
                               "difference": point["model"] - point[name], "difference_lower": lower}
        if not lower > 0:
            failed.append(f"{name} {point[name]:.3f} (difference {point['model'] - point[name]:+.3f}, "
                          f"{100 * q:g}th percentile {lower:+.3f})")
    out.passed = not failed
    out.reason = (f"beats every baseline on {len(y)} {split} galaxies" if out.passed else
                  f"does not beat {'; '.join(failed)} on {len(y)} {split} galaxies")
    return out
