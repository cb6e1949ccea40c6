"""Otsu pseudo-labels of a galaxy stamp: background / disk / bulge.

Steps for one stored image (pixels of the stored stamp):

1. **Plane**: the stored image's luminance, the mean of its channels as they are stored
   (:func:`features.morphometrics.inputs.measurement_plane` with ``band="luminance"`` and no stretch
   inversion). The same plane for the demo's composites and for real ones, so a model trained on the
   demo sees the pixels it will see on real stamps.
2. **Background and neighbours**: the morphometrics segmentation of that plane
   (:func:`features.morphometrics.segmentation.segment_central`): its sky level is subtracted, and its
   mask (every detected source other than the central one, and non-finite pixels) is left out of the
   histogram and of the label. Deblending is off by default (``OtsuOptions.deblend``): it triples the
   time for the few neighbours that touch the galaxy.
3. **Smoothing**: the Gaussian of the morphometrics detection (FWHM ``smooth_fwhm``, 3 px): a galaxy
   covers a small part of the stamp, and on the raw pixels the sky's noise dominates the histogram, so
   the lower threshold split the noise on 40 % of the demo stamps (measured on 60); smoothed, none.
4. **Thresholds**: three-class multi-Otsu (Liao, Chen & Chung 2001; Otsu 1979: the thresholds that
   maximise the between-class variance of the histogram), ``skimage.filters.threshold_multiotsu``, on
   the unmasked pixels. The lower threshold separates sky from galaxy, the upper one the bright core
   ("bulge") from the rest ("disk").
5. **Central galaxy**: the connected region above the lower threshold under the stamp centre (else the
   region with a pixel nearest the centre within ``centre_radius_frac`` of the smaller side).

Failures (the label is all background, the galaxy is never trained on): a blank plane
(``IMAGE_BLANK``); too few distinct values or a lower threshold within ``min_snr`` sky RMS of the sky
(the RMS of the smoothed sky; ``SEG_OTSU_FAILED``: no bimodality, Otsu split the noise); no region at the centre
(``SEG_NO_CENTRAL_SOURCE``). A mask reaching the border raises ``SEG_MASK_TOUCHES_EDGE``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from features.flags import Flag

__all__ = [
    "BACKGROUND",
    "BULGE",
    "CLASS_NAMES",
    "DISK",
    "PSEUDO_LABEL_METHOD",
    "OtsuOptions",
    "PseudoLabel",
    "keep_central",
    "otsu_pseudo_label",
    "pseudo_label_image",
]

BACKGROUND, DISK, BULGE = 0, 1, 2
CLASS_NAMES: tuple[str, ...] = ("background", "disk", "bulge")
"""Label values 0, 1, 2 of pseudo-labels and predicted masks."""

PSEUDO_LABEL_METHOD = "multiotsu3-luminance-v1"
"""Stored with every pseudo-label (the ``pseudo_labels.method`` key): a changed recipe gets a new name."""

FAILED = Flag.IMAGE_BLANK | Flag.SEG_OTSU_FAILED | Flag.SEG_NO_CENTRAL_SOURCE
"""Bits that leave the pseudo-label empty (not trained on)."""


@dataclass(frozen=True)
class OtsuOptions:
    """Parameters of :func:`otsu_pseudo_label`."""

    min_snr: float = 3.0
    """The lower threshold must be at least this many sky RMS above the sky (else ``SEG_OTSU_FAILED``)."""
    nbins: int = 256
    """Histogram bins of multi-Otsu."""
    centre_radius_frac: float = 0.1
    """How far from the centre (fraction of the smaller side) the galaxy's region may start."""
    smooth_fwhm: float = 3.0
    """FWHM (pixels) of the Gaussian smoothing before thresholding (0: none)."""
    deblend: bool = False
    """Deblend the central detection from touching neighbours before masking them (3x slower)."""


@dataclass
class PseudoLabel:
    """The pseudo-label of one stamp.

    Attributes
    ----------
    labels : numpy.ndarray
        uint8 ``(H, W)``: 0 background, 1 disk, 2 bulge.
    thresholds : tuple of float
        The two multi-Otsu thresholds (background-subtracted plane units; NaN when Otsu failed).
    background, rms : float
        Sky level subtracted and sky RMS of the (unsmoothed) plane.
    flags : int
        :class:`~features.flags.Flag` bits.
    """

    labels: np.ndarray
    thresholds: tuple[float, float]
    background: float
    rms: float
    flags: int

    @property
    def ok(self) -> bool:
        """Whether the label holds a galaxy to train on."""
        return not self.flags & FAILED


def _central_region(above: np.ndarray, radius: float) -> np.ndarray | None:
    regions, n = ndi.label(above, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return None
    ny, nx = above.shape
    at = int(regions[ny // 2, nx // 2])
    if at == 0:
        yy, xx = np.nonzero(regions)
        d2 = (yy - (ny - 1) / 2.0) ** 2 + (xx - (nx - 1) / 2.0) ** 2
        best = int(np.argmin(d2))
        if d2[best] > radius**2:
            return None
        at = int(regions[yy[best], xx[best]])
    return regions == at


def keep_central(labels: np.ndarray, *, centre_radius_frac: float = 0.1) -> np.ndarray:
    """``labels`` with every galaxy pixel (``> 0``) outside the central connected region set to 0.

    The central region is chosen as for the pseudo-labels (under the centre, else nearest within
    ``centre_radius_frac`` of the smaller side); none: all background.
    """
    lab = np.asarray(labels)
    region = _central_region(lab > 0, max(3.0, centre_radius_frac * min(lab.shape)))
    if region is None:
        return np.zeros_like(lab)
    return np.where(region, lab, 0).astype(lab.dtype)


def otsu_pseudo_label(data: np.ndarray, *, noise_floor: float = 0.0, options: OtsuOptions | None = None) -> PseudoLabel:
    """The background / disk / bulge pseudo-label of one 2-D plane (see the module docstring).

    Parameters
    ----------
    data : numpy.ndarray
        2-D plane (:func:`features.morphometrics.inputs.measurement_plane`).
    noise_floor : float
        Smallest sky RMS to assume (8-bit quantisation for composites).
    options : OtsuOptions, optional

    Returns
    -------
    PseudoLabel
        All background with a flag when Otsu fails; never raises for a bad image.
    """
    from photutils.utils.exceptions import NoDetectionsWarning
    from skimage.filters import threshold_multiotsu

    from features.morphometrics.segmentation import (
        SegmentationOptions,
        segment_central,
        smooth,
        smoothing_gain,
    )

    opt = options or OtsuOptions()
    with warnings.catch_warnings():  # a stamp of sky alone is an expected outcome, flagged below
        warnings.simplefilter("ignore", NoDetectionsWarning)
        seg = segment_central(data, noise_floor=noise_floor, options=SegmentationOptions(deblend=opt.deblend))
    empty = np.zeros(seg.image.shape, dtype=np.uint8)
    nan2 = (float("nan"), float("nan"))
    flags = int(seg.flags) & int(Flag.IMAGE_BLANK | Flag.IMAGE_NAN)
    if flags & Flag.IMAGE_BLANK:
        return PseudoLabel(empty, nan2, seg.background, seg.rms, flags)
    image = smooth(seg.image, opt.smooth_fwhm)
    rms = seg.rms * smoothing_gain(opt.smooth_fwhm)
    values = image[~seg.mask]
    if np.unique(values).size < 3:
        return PseudoLabel(empty, nan2, seg.background, seg.rms, flags | Flag.SEG_OTSU_FAILED)
    low, high = (float(t) for t in threshold_multiotsu(values, classes=3, nbins=opt.nbins))
    if not low >= opt.min_snr * rms:
        return PseudoLabel(empty, (low, high), seg.background, seg.rms, flags | Flag.SEG_OTSU_FAILED)
    region = _central_region((image > low) & ~seg.mask, max(3.0, opt.centre_radius_frac * min(empty.shape)))
    if region is None:
        return PseudoLabel(empty, (low, high), seg.background, seg.rms, flags | Flag.SEG_NO_CENTRAL_SOURCE)
    labels = np.where(region, np.where(image > high, BULGE, DISK), BACKGROUND).astype(np.uint8)
    if region[0].any() or region[-1].any() or region[:, 0].any() or region[:, -1].any():
        flags |= Flag.SEG_MASK_TOUCHES_EDGE
    return PseudoLabel(labels, (low, high), seg.background, seg.rms, flags)


def pseudo_label_image(image: np.ndarray, *, image_kind: str, bands: str | None,
                       options: OtsuOptions | None = None) -> PseudoLabel:
    """:func:`otsu_pseudo_label` of a stored image's luminance (``images`` row columns as arguments).

    Raises
    ------
    features.errors.InputError
        The image is not ``(H, W[, C])`` with H, W >= 8, or its kind is unknown.
    """
    from features.morphometrics.inputs import LUMINANCE, measurement_plane

    plane = measurement_plane(image, image_kind=image_kind, bands=bands, band=LUMINANCE, stretch=None)
    return otsu_pseudo_label(plane.data, noise_floor=plane.noise_floor, options=options)
