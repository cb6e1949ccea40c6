"""Overlap of two binary masks: intersection over union (Jaccard 1912) and the Dice (1945) coefficient."""

from __future__ import annotations

import numpy as np

__all__ = ["dice", "iou"]


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    return a, b


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """``|A & B| / |A | B|`` of two boolean masks of the same shape.

    Two empty masks agree perfectly: 1.0 (nothing was there and nothing was found).
    """
    a, b = _pair(pred, truth)
    union = int(np.count_nonzero(a | b))
    return 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """``2 |A & B| / (|A| + |B|)`` of two boolean masks of the same shape (1.0 for two empty masks).

    Dice is ``2 IoU / (1 + IoU)``: the same ranking, kinder to small overlaps.
    """
    a, b = _pair(pred, truth)
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total
