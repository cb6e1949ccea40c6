"""Classification metrics and the confusion-matrix figure.

Balanced accuracy (the mean per-class recall; Brodersen et al. 2010) is the headline number because the
Galaxy10 classes are imbalanced by a factor of ~8 (334 cigars, 2645 round smooth); accuracy and macro F1
are reported beside it. Chance balanced accuracy is ``1 / K`` for ``K`` classes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, recall_score

__all__ = ["balanced_accuracy", "classification_metrics", "confusion_png", "figure_png"]


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (NaN for an empty input)."""
    if len(y_true) == 0:
        return float("nan")
    return float(balanced_accuracy_score(y_true, y_pred))


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str]
) -> dict[str, Any]:
    """Balanced accuracy, accuracy, macro F1, per-class recall and the confusion matrix.

    Parameters
    ----------
    y_true, y_pred : numpy.ndarray of int
        Class indices ``0..K-1``.
    names : sequence of str
        Class names, ``K`` of them.

    Returns
    -------
    dict
        ``balanced_accuracy``, ``accuracy``, ``macro_f1``, ``per_class_recall`` (name -> recall; NaN for a
        class absent from ``y_true``), ``confusion`` (``K x K`` list, rows true, columns predicted),
        ``n`` and ``chance_balanced_accuracy``.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    k = len(names)
    labels = list(range(k))
    if len(y_true) == 0:
        nan = float("nan")
        return {"n": 0, "balanced_accuracy": nan, "accuracy": nan, "macro_f1": nan,
                "per_class_recall": {n: nan for n in names}, "confusion": [[0] * k for _ in range(k)],
                "chance_balanced_accuracy": 1.0 / k}
    present = np.isin(np.arange(k), y_true)
    recall = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "n": len(y_true),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=[i for i in labels if present[i]],
                                   average="macro", zero_division=0)),
        "per_class_recall": {n: (float(r) if present[i] else float("nan"))
                             for i, (n, r) in enumerate(zip(names, recall))},
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "chance_balanced_accuracy": 1.0 / k,
    }


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes, after ``tight_layout`` (the caller closes the figure)."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def confusion_png(confusion: Sequence[Sequence[int]], names: Sequence[str], title: str = "") -> bytes:
    """A PNG of the row-normalised confusion matrix (rows: true class), with counts in the cells."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(names)
    size = 2.0 + 0.45 * k
    fig, ax = plt.subplots(figsize=(size + 1.0, size), dpi=80)
    try:
        im = ax.imshow(frac, vmin=0, vmax=1, cmap="Blues")
        ax.set_xticks(range(k), [n[:18] for n in names], rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(k), [n[:18] for n in names], fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if title:
            ax.set_title(title, fontsize=9)
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if frac[i, j] > 0.5 else "black")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        return figure_png(fig)
    finally:
        plt.close(fig)
