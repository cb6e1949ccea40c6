"""Background, segmentation and the central source: what statmorph needs besides the image.

Steps for one plane (all in pixels of the stored stamp):

1. **Background**: sigma-clipped median and standard deviation (3 sigma, 5 iterations) of the pixels
   outside a first, generous detection (2 sigma on the smoothed image, grown by 5 pixels): the galaxy
   usually fills much of a 256 x 256 stamp, so clipping alone would bias the sky high. The RMS is never
   taken below the plane's noise floor (8-bit quantisation for composites).
2. **Detection**: ``photutils.segmentation.detect_sources`` on the background-subtracted image smoothed
   by a Gaussian (FWHM ``smooth_fwhm``), threshold ``nsigma`` times the (unsmoothed) RMS, at least
   ``npixels`` connected pixels (8-connectivity): the recipe of statmorph's tutorial.
3. **Central source**: the segment under the stamp centre, else the segment with a pixel nearest the
   centre within ``centre_radius`` of it; none: :attr:`~features.flags.Flag.MORPH_NO_CENTRAL_SOURCE`.
4. **Deblending**: ``photutils.segmentation.deblend_sources`` (multi-thresholding plus watershed,
   Bertin & Arnouts 1996) of the central segment only. Multi-thresholding also splits large spirals
   at bright knots and bar ends (worse on asinh-stretched composites, where bright cores are
   compressed), so pieces whose peak rises less than ``merge_saddle_ratio`` times above the saddle
   joining them to the central piece are merged back. Whatever is still split off is masked as
   neighbours and raises :attr:`~features.flags.Flag.MORPH_DEBLENDED` (informational).
   :attr:`~features.flags.Flag.MORPH_CENTRE_BLENDED` is raised only when a neighbour touching the
   central source is bright enough to matter: its light above the saddle that joins it to the central
   source (the neighbour's own light, without the galaxy's beneath it) is at least
   ``blend_flux_fraction`` of the central source's flux (:func:`neighbour_fraction`). Measured against
   the demo survey's truth (``benchmarks/validate_centre_blended.py``): the demo stamps are crowded,
   and a neighbour touches the true mask of 92 % of the galaxies, mostly a faint one that masking
   removes harmlessly.
5. **Mask**: every other segment (and any non-finite pixel) is masked for statmorph, which is the
   recommended use (Rodriguez-Gomez et al. 2019, sec. 2).

Edge cases: a blank plane (every finite pixel equal, or none finite) is flagged ``IMAGE_BLANK`` and has
no segmentation; non-finite pixels are set to 0, masked and flagged ``IMAGE_NAN``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.stats import sigma_clipped_stats
from photutils.segmentation import deblend_sources, detect_sources
from scipy import ndimage as ndi

from features.flags import Flag

__all__ = ["Segmentation", "SegmentationOptions", "estimate_background", "neighbour_fraction", "segment_central", "smooth",
           "smoothing_gain"]

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclass(frozen=True)
class SegmentationOptions:
    """Parameters of :func:`segment_central` (defaults suit 256 x 256 DECaLS-like stamps)."""

    nsigma: float = 1.5
    """Detection threshold in units of the background RMS (on the smoothed image)."""
    npixels: int = 10
    """Minimum connected pixels of a source."""
    smooth_fwhm: float = 3.0
    """FWHM (pixels) of the Gaussian smoothing before detection (about the DECaLS PSF)."""
    deblend: bool = True
    """Deblend the central segment from touching neighbours."""
    nlevels: int = 32
    """Deblending thresholds (photutils ``n_levels``)."""
    contrast: float = 0.001
    """Minimum flux fraction of a deblended component (photutils ``contrast``)."""
    merge_saddle_ratio: float = 2.0
    """Deblended pieces of the central segment whose peak is below this many times their saddle with
    the central piece are merged back (galaxy substructure, not a neighbour)."""
    blend_flux_fraction: float = 0.05
    """A neighbour deblended off the central source raises ``MORPH_CENTRE_BLENDED`` when its light above
    the saddle is at least this fraction of the central source's flux (fainter ones: ``MORPH_DEBLENDED``)."""
    centre_radius_frac: float = 0.1
    """How far from the stamp centre (fraction of the smaller side) the central source may lie."""
    min_area: int = 50
    """Central sources with fewer pixels are measured but flagged ``MORPH_SMALL_SOURCE``."""


@dataclass
class Segmentation:
    """The inputs statmorph needs for one galaxy.

    Attributes
    ----------
    image : numpy.ndarray
        Background-subtracted float64 plane (non-finite pixels set to 0).
    segmap : numpy.ndarray or None
        int32, 1 on the central source, 0 elsewhere; None when there is nothing to measure.
    mask : numpy.ndarray
        bool, True on other sources and non-finite pixels.
    background, rms : float
        Sky level subtracted and per-pixel sky noise.
    area : int
        Pixels of the central segment (0 without one).
    flags : int
        :class:`~features.flags.Flag` bits raised so far.
    blend_fraction : float
        :func:`neighbour_fraction` of the brightest neighbour deblended off the central source (0 when
        none was).
    """

    image: np.ndarray
    segmap: np.ndarray | None
    mask: np.ndarray
    background: float
    rms: float
    area: int
    flags: int
    blend_fraction: float = 0.0


def smooth(image: np.ndarray, fwhm: float) -> np.ndarray:
    """Gaussian smoothing of FWHM ``fwhm`` pixels (the detection's; ``fwhm <= 0``: the image itself)."""
    if fwhm <= 0:
        return image
    return ndi.gaussian_filter(image, fwhm * _FWHM_TO_SIGMA, mode="nearest", truncate=3.0)


def estimate_background(image: np.ndarray, bad: np.ndarray, *, smooth_fwhm: float = 3.0,
                        noise_floor: float = 0.0) -> tuple[float, float]:
    """Sky level and RMS from the pixels away from sources (see the module docstring, step 1).

    Parameters
    ----------
    image : numpy.ndarray
        2-D float plane (values under ``bad`` are ignored).
    bad : numpy.ndarray
        bool mask of pixels to ignore (non-finite).
    smooth_fwhm : float
        Smoothing for the provisional source mask.
    noise_floor : float
        Lower bound for the returned RMS.

    Returns
    -------
    background, rms : float
    """
    _, median, std = sigma_clipped_stats(image, mask=bad, sigma=3.0, maxiters=5)
    if np.isfinite(std) and std > 0:
        smoothed = smooth(np.where(bad, median, image) - median, smooth_fwhm)
        sources = ndi.binary_dilation(smoothed > 2.0 * std * smoothing_gain(smooth_fwhm), iterations=5)
        keep = bad | sources
        if (~keep).sum() >= max(100, image.size // 20):
            _, median, std = sigma_clipped_stats(image, mask=keep, sigma=3.0, maxiters=5)
    std = float(std) if np.isfinite(std) else 0.0
    return float(median), max(std, float(noise_floor))


def smoothing_gain(fwhm: float) -> float:
    """How much Gaussian smoothing lowers white-noise RMS: ``1 / (2 sqrt(pi) sigma)``, at most 1."""
    if fwhm <= 0:
        return 1.0
    return min(1.0, 1.0 / (2.0 * np.sqrt(np.pi) * fwhm * _FWHM_TO_SIGMA))


def _central_label(labels: np.ndarray, radius: float) -> int:
    ny, nx = labels.shape
    cy, cx = (ny - 1) / 2.0, (nx - 1) / 2.0
    at_centre = int(labels[ny // 2, nx // 2])
    if at_centre:
        return at_centre
    r = int(np.ceil(radius))
    y0, y1 = max(0, int(cy) - r), min(ny, int(cy) + r + 2)
    x0, x1 = max(0, int(cx) - r), min(nx, int(cx) + r + 2)
    box = labels[y0:y1, x0:x1]
    yy, xx = np.nonzero(box)
    if yy.size == 0:
        return 0
    d2 = (yy + y0 - cy) ** 2 + (xx + x0 - cx) ** 2
    best = int(np.argmin(d2))
    return int(box[yy[best], xx[best]]) if d2[best] <= radius**2 else 0


def _merge_substructure(pieces: np.ndarray, centre: int, smoothed: np.ndarray, ratio: float) -> np.ndarray:
    """The central piece grown by the deblended pieces that are substructure of it, not neighbours.

    A piece touching the (growing) central region is merged when its peak is less than ``ratio`` times
    the saddle, the highest smoothed value on its border with the central region: a spiral-arm knot or
    bar end barely rises above the disk around it, a star or a neighbour galaxy rises far above it.
    Merging repeats until no touching piece qualifies.
    """
    region = pieces == centre
    others = [int(v) for v in np.unique(pieces) if v not in (0, centre)]
    structure = np.ones((3, 3), dtype=bool)
    changed = True
    while changed and others:
        changed = False
        ring = ndi.binary_dilation(region, structure=structure) & ~region
        for lab in list(others):
            piece = pieces == lab
            border = ring & piece
            if not border.any():
                continue
            if smoothed[piece].max() < ratio * smoothed[border].max():
                region |= piece
                others.remove(lab)
                changed = True
        # the ring is recomputed after each pass so chains of knots merge too
    return region


def neighbour_fraction(pieces: np.ndarray, central: np.ndarray, smoothed: np.ndarray) -> float:
    """How bright the brightest neighbour touching the central source is, as a fraction of its flux.

    For every labelled piece of ``pieces`` (0 is background) that touches ``central`` (8-connected),
    the saddle ``s`` is the highest smoothed value on their border, and the neighbour's own light is
    ``sum(smoothed - s)`` over the piece's pixels above ``s``: the light that rises above the galaxy
    beneath it (the pedestal up to ``s`` is mostly the galaxy's). The result is the largest such sum
    divided by the positive smoothed flux of ``central``.

    Parameters
    ----------
    pieces : numpy.ndarray
        int labels of the deblended neighbours (pixels of ``central`` are ignored).
    central : numpy.ndarray
        bool mask of the central source.
    smoothed : numpy.ndarray
        The smoothed, background-subtracted image the deblending worked on.

    Returns
    -------
    float
        0.0 when no piece touches the central source or the central flux is not positive.
    """
    total = float(np.sum(np.clip(smoothed[central], 0.0, None)))
    if total <= 0:
        return 0.0
    ring = ndi.binary_dilation(central, structure=np.ones((3, 3), dtype=bool)) & ~central
    best = 0.0
    for lab in np.unique(pieces[ring]):
        if lab == 0:
            continue
        piece = (pieces == lab) & ~central
        saddle = float(smoothed[ring & piece].max())
        values = smoothed[piece]
        best = max(best, float(np.sum(values[values > saddle] - saddle)))
    return best / total


def segment_central(data: np.ndarray, *, noise_floor: float = 0.0,
                    options: SegmentationOptions | None = None) -> Segmentation:
    """Background-subtract, segment and pick the central source of one plane.

    Parameters
    ----------
    data : numpy.ndarray
        2-D plane (see :func:`features.morphometrics.inputs.measurement_plane`).
    noise_floor : float
        Smallest RMS to assume.
    options : SegmentationOptions, optional

    Returns
    -------
    Segmentation
        ``segmap`` is None (and a flag says why) when there is nothing to measure.
    """
    opt = options or SegmentationOptions()
    data = np.asarray(data, dtype=np.float64)
    flags = 0
    bad = ~np.isfinite(data)
    if bad.any():
        flags |= Flag.IMAGE_NAN
    finite = data[~bad]
    if finite.size == 0 or np.all(finite == finite[0]):
        level = float(finite[0]) if finite.size else 0.0
        image = np.where(bad, 0.0, data - level)
        return Segmentation(image, None, bad, level, 0.0, 0, int(flags | Flag.IMAGE_BLANK))

    background, rms = estimate_background(data, bad, smooth_fwhm=opt.smooth_fwhm, noise_floor=noise_floor)
    image = np.where(bad, 0.0, data - background)
    if rms <= 0:  # a noiseless image: any positive pixel is signal
        rms = float(np.abs(image).max()) * 1e-6
    smoothed = smooth(image, opt.smooth_fwhm)
    threshold = opt.nsigma * rms
    segm = detect_sources(smoothed, threshold, opt.npixels, mask=bad)
    radius = max(3.0, opt.centre_radius_frac * min(image.shape))
    label = _central_label(segm.data, radius) if segm is not None else 0
    if label == 0:
        return Segmentation(image, None, bad, background, rms, 0, int(flags | Flag.MORPH_NO_CENTRAL_SOURCE))

    labels = segm.data
    segmap = labels == label
    blend = 0.0
    if opt.deblend and segmap.sum() >= 2 * opt.npixels:
        deblended = deblend_sources(smoothed, segm, opt.npixels, labels=[label], n_levels=opt.nlevels,
                                    contrast=opt.contrast, progress_bar=False)
        pieces = np.where(segmap, deblended.data, 0)
        if np.unique(pieces[segmap]).size > 1:
            centre = _central_label(pieces, radius)
            merged = _merge_substructure(pieces, centre, smoothed, opt.merge_saddle_ratio)
            if merged.sum() < segmap.sum():
                flags |= Flag.MORPH_DEBLENDED
                blend = neighbour_fraction(np.where(merged, 0, pieces), merged, smoothed)
                if blend >= opt.blend_flux_fraction:
                    flags |= Flag.MORPH_CENTRE_BLENDED
                labels = np.where(segmap & ~merged, deblended.data, labels)
                labels = np.where(merged, label, labels)
                segmap = merged
    mask = ((labels != 0) & ~segmap) | bad
    segmap = segmap.astype(np.int32)
    area = int(segmap.sum())
    if area < opt.min_area:
        flags |= Flag.MORPH_SMALL_SOURCE
    return Segmentation(image, segmap, mask, background, rms, area, int(flags), blend)
