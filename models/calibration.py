"""Temperature scaling and the calibration scores it is judged by: ECE, NLL and Brier score.

Temperature scaling (Guo, Pleiss, Sun & Weinberger 2017, "On Calibration of Modern Neural Networks",
ICML) divides a classifier's logits by one scalar ``T > 0`` fitted on held-out data by minimising the
negative log-likelihood; the predicted class never changes (``argmax`` is invariant), only the
confidence. Here ``T`` is fitted on the validation split and judged on test. Log-probabilities serve as
logits: ``log p = z - logsumexp(z)`` differs from the logits ``z`` by a per-row constant, which softmax
ignores, so scaling ``log p`` by ``1 / T`` is exactly scaling ``z``.

The expected calibration error (ECE; Naeini, Cooper & Hauskrecht 2015; Guo et al. 2017, eq. 3) bins
the galaxies by their top-class confidence into ``n_bins`` equal-width bins of (0, 1], the top bin
closed at 1 (a confidence of exactly 1 counts, in the last bin), and averages
``|accuracy - mean confidence|`` over the bins weighted by their share of galaxies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from models.metrics import figure_png

__all__ = [
    "CalibrationReport",
    "apply_temperature",
    "brier",
    "calibrate",
    "ece",
    "fit_temperature",
    "log_probs",
    "nll",
    "reliability_bins",
    "reliability_png",
]

_EPS = 1e-12
T_BOUNDS: tuple[float, float] = (0.05, 20.0)


def log_probs(probs: np.ndarray) -> np.ndarray:
    """``log p`` clipped at ``1e-12``: logits up to a per-row constant."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0))


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / T)``, float64, numerically stable."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes (probabilities clipped at ``1e-12``)."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return float("nan")
    return float(-np.log(np.clip(p[np.arange(len(y)), y], _EPS, 1.0)).mean())


def brier(probs: np.ndarray, y: np.ndarray) -> float:
    """Multi-class Brier score (Brier 1950): mean over galaxies of ``sum_k (p_k - 1[y = k])^2``, in [0, 2]."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return float("nan")
    onehot = np.eye(p.shape[1])[y]
    return float(((p - onehot) ** 2).sum(axis=1).mean())


def _bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin ``i`` holds confidences in ``(i / n, (i + 1) / n]``; 0 goes to the first bin, 1 to the last."""
    return np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def reliability_bins(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per equal-width confidence bin: galaxies ``count``, ``accuracy`` and mean ``confidence`` (NaN if empty)."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    conf = p.max(axis=1) if len(p) else np.zeros(0)
    correct = (p.argmax(axis=1) == y).astype(np.float64) if len(p) else np.zeros(0)
    idx = _bin_index(conf, n_bins)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(idx, weights=correct, minlength=n_bins) / count
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
    return {"count": count, "accuracy": acc, "confidence": mean_conf,
            "edges": np.linspace(0.0, 1.0, n_bins + 1)}


def ece(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins, the top bin including 1.0.

    Parameters
    ----------
    probs : numpy.ndarray, shape (N, K)
        Class probabilities.
    y : numpy.ndarray, shape (N,)
        True class index.
    n_bins : int
        Bins of (0, 1] (Guo et al. 2017 use 15).

    Returns
    -------
    float
        ``sum_b |B_b| / N * |acc(B_b) - conf(B_b)|``; NaN for an empty input.
    """
    if len(y) == 0:
        return float("nan")
    b = reliability_bins(probs, y, n_bins)
    full = b["count"] > 0
    gap = np.abs(b["accuracy"][full] - b["confidence"][full])
    return float((b["count"][full] / b["count"].sum() * gap).sum())


def fit_temperature(logits: np.ndarray, y: np.ndarray, bounds: tuple[float, float] = T_BOUNDS) -> float:
    """The temperature minimising the NLL of ``softmax(logits / T)`` on ``(logits, y)`` (Guo et al. 2017).

    Parameters
    ----------
    logits : numpy.ndarray, shape (N, K)
        Logits, or log-probabilities (:func:`log_probs`).
    y : numpy.ndarray, shape (N,)
        True class index.
    bounds : (float, float)
        Search interval of ``T`` (a bounded 1-D search over ``log T``, scipy's ``minimize_scalar``).

    Returns
    -------
    float
        ``T``; 1.0 for an empty input (nothing to fit).
    """
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return 1.0

    def loss(log_t: float) -> float:
        return nll(apply_temperature(z, float(np.exp(log_t))), y)

    res = minimize_scalar(loss, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-4})
    best = float(np.exp(res.x))
    return best if loss(np.log(best)) <= loss(0.0) else 1.0


@dataclass
class CalibrationReport:
    """Temperature scaling of one model: ``T`` and the scores before and after, on val and test.

    Attributes
    ----------
    temperature : float
        Fitted on val by NLL.
    n_bins : int
    val, test : dict
        ``{"before": {"ece", "nll", "brier"}, "after": {...}}``, ``n``.
    val_ece_raised : bool
        Scaling raised the validation ECE (the calibration check then fails).
    """

    temperature: float
    n_bins: int
    val: dict
    test: dict
    val_ece_raised: bool

    def as_dict(self) -> dict:
        """JSON-ready (``metrics_json["calibration"]``)."""
        return asdict(self)

    def table_md(self) -> str:
        """A markdown table of the scores before and after, for the asset metadata."""
        rows = ["| split | score | before | after |", "|---|---|---|---|"]
        for split in ("val", "test"):
            d = getattr(self, split)
            for score in ("ece", "nll", "brier"):
                rows.append(f"| {split} (n={d['n']}) | {score} | {d['before'][score]:.4f} | {d['after'][score]:.4f} |")
        return "\n".join(rows)


def _scores(probs: np.ndarray, y: np.ndarray, n_bins: int) -> dict[str, float]:
    return {"ece": ece(probs, y, n_bins), "nll": nll(probs, y), "brier": brier(probs, y)}


def calibrate(val_probs: np.ndarray, y_val: np.ndarray, test_probs: np.ndarray, y_test: np.ndarray,
              *, n_bins: int = 15) -> CalibrationReport:
    """Fit ``T`` on val (:func:`fit_temperature` of :func:`log_probs`) and score before and after on val and test."""
    t = fit_temperature(log_probs(val_probs), y_val)
    out = {}
    for split, p, y in (("val", val_probs, y_val), ("test", test_probs, y_test)):
        after = apply_temperature(log_probs(p), t)
        out[split] = {"n": len(y), "before": _scores(p, y, n_bins), "after": _scores(after, y, n_bins)}
    raised = bool(out["val"]["after"]["ece"] > out["val"]["before"]["ece"] + 1e-12)
    return CalibrationReport(temperature=t, n_bins=n_bins, val=out["val"], test=out["test"], val_ece_raised=raised)


def reliability_png(probs: Sequence[np.ndarray], y: np.ndarray, labels: Sequence[str], *, n_bins: int = 15,
                    title: str = "") -> bytes:
    """A reliability diagram (accuracy against confidence per bin, one line per probability set) as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax, hist) = plt.subplots(2, 1, figsize=(4.2, 5.0), dpi=80, height_ratios=(3, 1), sharex=True)
    try:
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect")
        for p, label in zip(probs, labels):
            b = reliability_bins(p, y, n_bins)
            full = b["count"] > 0
            ax.plot(b["confidence"][full], b["accuracy"][full], marker="o", ms=3,
                    label=f"{label} (ECE {ece(p, y, n_bins):.3f})")
            centres = (b["edges"][:-1] + b["edges"][1:]) / 2
            hist.bar(centres, b["count"], width=1 / n_bins, alpha=0.4, label=label)
        ax.set_ylabel("accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, loc="upper left")
        if title:
            ax.set_title(title, fontsize=9)
        hist.set_xlabel("confidence (top class)")
        hist.set_ylabel("galaxies")
        return figure_png(fig)
    finally:
        plt.close(fig)
