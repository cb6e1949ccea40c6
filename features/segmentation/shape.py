"""Shape of a labelled galaxy mask: area, centroid, ellipticity from second moments, bulge fraction.

The ellipticity is ``1 - b/a`` with ``a``, ``b`` the square roots of the eigenvalues of the mask's
second central moments (the unweighted-moment shape of Bertin & Arnouts 1996, sec. 2.3, on the binary
mask rather than the flux). An empty mask has NaN for every value except the area (0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["MaskShape", "mask_shape"]


@dataclass(frozen=True)
class MaskShape:
    """Features of one mask (pixels of the stamp; ``area_arcsec2`` NaN when the pixel scale is unknown)."""

    area_px: int
    area_arcsec2: float
    centroid_x_px: float
    centroid_y_px: float
    ellipticity: float
    bulge_fraction: float
    touches_edge: bool


def mask_shape(labels: np.ndarray, pxscale: float | None, *, bulge_label: int = 2) -> MaskShape:
    """Measure a label image whose galaxy is every pixel ``> 0`` and whose bulge is ``== bulge_label``.

    Parameters
    ----------
    labels : numpy.ndarray
        2-D integer labels (0 background).
    pxscale : float or None
        arcsec per pixel.
    bulge_label : int
        The label of the bulge class.

    Returns
    -------
    MaskShape
        ``bulge_fraction`` is bulge pixels over galaxy pixels.
    """
    lab = np.asarray(labels)
    galaxy = lab > 0
    area = int(np.count_nonzero(galaxy))
    scale = float(pxscale) if pxscale is not None and math.isfinite(float(pxscale)) and pxscale > 0 else math.nan
    if area == 0:
        return MaskShape(0, 0.0 if math.isfinite(scale) else math.nan, math.nan, math.nan, math.nan, math.nan, False)
    yy, xx = np.nonzero(galaxy)
    cx, cy = float(xx.mean()), float(yy.mean())
    dx, dy = xx - cx, yy - cy
    cov = np.array([[np.mean(dx * dx), np.mean(dx * dy)], [np.mean(dx * dy), np.mean(dy * dy)]])
    cov += np.eye(2) / 12.0  # a pixel's own extent, so a single pixel is round, not degenerate
    lo, hi = np.linalg.eigvalsh(cov)
    ellipticity = float(1.0 - math.sqrt(max(lo, 0.0) / hi))
    edge = bool(galaxy[0].any() or galaxy[-1].any() or galaxy[:, 0].any() or galaxy[:, -1].any())
    bulge = int(np.count_nonzero(lab == bulge_label))
    return MaskShape(area, area * scale * scale, cx, cy, ellipticity, bulge / area, edge)
