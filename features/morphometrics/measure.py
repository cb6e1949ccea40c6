"""Measure one galaxy in one band: statmorph on the central source, one flat record out.

The record holds statmorph's scalar outputs (Rodriguez-Gomez et al. 2019): Gini and M20 (Lotz, Primack &
Madau 2004), concentration, asymmetry and smoothness (Conselice 2003), multimode, intensity and
deviation (Freeman et al. 2013; Peth et al. 2016), outer asymmetry (Wen et al. 2014), shape asymmetry
(Pawlik et al. 2016), the radii behind them (in pixels and, with the pixel scale, arcsec), the shape
(ellipticity, elongation, orientation about the asymmetry centre) and the single-Sersic fit.

Failure policy: a quantity that cannot be measured is NaN and the ``flags`` column says why, never
statmorph's -99. statmorph's own ``flag`` (0 good, 1 suspect, 2 bad, 4 catastrophic) is kept in
``statmorph_flag`` and raises :attr:`~features.flags.Flag.MORPH_STATMORPH_FLAG` when > 0; a
catastrophic flag makes every value NaN. ``flag_sersic`` > 0 raises ``MORPH_SERSIC_FAILED`` and makes
the Sersic values NaN; -1 means the fit was not asked for. A measurement that runs past the time limit
is NaN with ``MORPH_TIMED_OUT``; one that raises is NaN with ``MORPH_FAILED`` and the exception text in
``error``. Nothing here raises for a bad galaxy except :class:`~features.errors.InputError` for a band
the image does not have, which batch callers check up front.
"""

from __future__ import annotations

import math
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import statmorph

from features.errors import InputError
from features.flags import Flag
from features.morphometrics.fast import VERIFIED_STATMORPH, morphology_class
from features.morphometrics.inputs import Plane, measurement_plane
from features.morphometrics.segmentation import Segmentation, SegmentationOptions, segment_central

__all__ = [
    "ARCSEC_RADII",
    "QUANTITIES",
    "SERSIC_QUANTITIES",
    "MorphOptions",
    "MorphTimeout",
    "empty_record",
    "measure_image",
    "measure_plane",
    "record_from_morphology",
    "run_statmorph",
    "statmorph_stamp",
    "time_limit",
]

_STATMORPH_NAMES: dict[str, str] = {
    "gini": "gini",
    "m20": "m20",
    "gini_m20_bulge": "gini_m20_bulge",
    "gini_m20_merger": "gini_m20_merger",
    "concentration": "concentration",
    "asymmetry": "asymmetry",
    "smoothness": "smoothness",
    "multimode": "multimode",
    "intensity": "intensity",
    "deviation": "deviation",
    "outer_asymmetry": "outer_asymmetry",
    "shape_asymmetry": "shape_asymmetry",
    "rms_asymmetry2": "rms_asymmetry2",
    "r20": "r20",
    "r50": "r50",
    "r80": "r80",
    "rpetro_circ": "rpetro_circ",
    "rpetro_ellip": "rpetro_ellip",
    "rhalf_circ": "rhalf_circ",
    "rhalf_ellip": "rhalf_ellip",
    "rmax_circ": "rmax_circ",
    "ellipticity": "ellipticity_asymmetry",
    "elongation": "elongation_asymmetry",
    "orientation": "orientation_asymmetry",
    "xc_centroid": "xc_centroid",
    "yc_centroid": "yc_centroid",
    "xc_asymmetry": "xc_asymmetry",
    "yc_asymmetry": "yc_asymmetry",
    "flux_circ": "flux_circ",
    "sky_sigma": "sky_sigma",
    "sn_per_pixel": "sn_per_pixel",
    "sersic_n": "sersic_n",
    "sersic_rhalf": "sersic_rhalf",
    "sersic_ellip": "sersic_ellip",
    "sersic_theta": "sersic_theta",
    "sersic_amplitude": "sersic_amplitude",
    "sersic_chi2_dof": "sersic_chi2_dof",
}

QUANTITIES: tuple[str, ...] = tuple(_STATMORPH_NAMES)
"""Float columns copied from statmorph (``ellipticity``/``elongation``/``orientation`` are statmorph's
``*_asymmetry`` versions, measured about the asymmetry centre; positions are in stamp pixels)."""

SERSIC_QUANTITIES: tuple[str, ...] = tuple(q for q in QUANTITIES if q.startswith("sersic_"))

ARCSEC_RADII: tuple[str, ...] = (
    "r20", "r50", "r80", "rpetro_circ", "rpetro_ellip", "rhalf_circ", "rhalf_ellip", "rmax_circ", "sersic_rhalf",
)
"""Radii also stored in arcsec as ``<name>_arcsec`` (pixels times ``pxscale``)."""


@dataclass(frozen=True)
class MorphOptions:
    """How to measure (every field has a default; frozen so it can travel to worker processes).

    Attributes
    ----------
    fit_sersic : bool
        Fit the single Sersic profile (about 30 % of the time of a fast measurement).
    time_limit_s : float
        Per galaxy and band; beyond it the record is NaN with ``MORPH_TIMED_OUT``. 0 disables it.
    fast : bool
        Use :class:`~features.morphometrics.fast.FastSourceMorphology` (~6x faster per core; within 1e-10
        of plain statmorph, Sersic parameters within 1e-6).
        ``False`` runs plain ``statmorph.SourceMorphology`` (the benchmark's baseline).
    gain : float or None
        Electrons per data unit, for statmorph's Poisson weight map; None uses a constant weight map
        equal to the sky RMS (right for composites and for sky-dominated noise).
    segmentation : SegmentationOptions
    cutout : bool
        Hand statmorph only its own postage stamp (:func:`statmorph_stamp`: the central segment's bounding
        box grown 2.5x, at least 48 pixels, cut to the frame) instead of the whole frame. statmorph
        computes everything inside that stamp, so the values are the same (to rounding: positions are
        shifted back to frame pixels) while the arrays it is given no longer grow with the frame.
        ``False`` passes the whole frame (the benchmark's comparison), and so does any statmorph version
        not in :data:`~features.morphometrics.fast.VERIFIED_STATMORPH` (one that looked outside its stamp
        would otherwise change values silently).
    """

    fit_sersic: bool = True
    time_limit_s: float = 30.0
    fast: bool = True
    gain: float | None = None
    segmentation: SegmentationOptions = field(default_factory=SegmentationOptions)
    cutout: bool = True


class MorphTimeout(BaseException):
    """Raised inside a measurement that ran past its time limit (a BaseException: no ``except Exception`` swallows it)."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`MorphTimeout` in the block after ``seconds`` of wall time (``SIGALRM``).

    Works in the main thread of a process (every worker of :func:`features.morphometrics.measure_batch`
    is one); elsewhere, or with ``seconds <= 0``, the block runs without a limit.
    """
    usable = seconds > 0 and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise MorphTimeout(f"exceeded {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_statmorph(
    image: np.ndarray,
    segmap: np.ndarray,
    *,
    label: int = 1,
    mask: np.ndarray | None = None,
    weightmap: np.ndarray | None = None,
    gain: float | None = None,
    psf: np.ndarray | None = None,
    fit_sersic: bool = True,
    fast: bool = True,
    **kwargs: Any,
) -> statmorph.SourceMorphology:
    """Run statmorph on one labelled source (warnings silenced; they are summarised by its flags).

    Parameters
    ----------
    image : numpy.ndarray
        Background-subtracted 2-D image.
    segmap : numpy.ndarray
        Integer segmentation map; ``label`` is measured.
    mask : numpy.ndarray, optional
        bool, True where pixels are to be ignored.
    weightmap, gain : optional
        One of them is required by statmorph (1-sigma error image, or electrons per data unit).
    psf : numpy.ndarray, optional
        PSF image for the Sersic fit.
    fit_sersic : bool
        False skips the Sersic fit (fast path only).
    fast : bool
        :class:`~features.morphometrics.fast.FastSourceMorphology` when the installed statmorph is
        verified, else plain statmorph.
    **kwargs
        Passed to statmorph (e.g. ``include_doublesersic``).

    Returns
    -------
    statmorph.SourceMorphology
    """
    cls = morphology_class() if fast else statmorph.SourceMorphology
    if cls is not statmorph.SourceMorphology:
        kwargs["fit_sersic"] = fit_sersic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(image, segmap, label, mask=mask, weightmap=weightmap, gain=gain, psf=psf, **kwargs)


def statmorph_stamp(segmap: np.ndarray, *, cutout_extent: float = 2.5,
                    min_cutout_size: int = 48) -> tuple[slice, slice]:
    """The postage stamp statmorph cuts around the source of ``segmap`` (its ``_slice_stamp``).

    statmorph 0.7 measures every quantity inside this stamp (the sky box, apertures, rotations, the
    Sersic fit), so handing it just the stamp gives the values of the whole frame. The same integer
    arithmetic as statmorph: the bounding box of the non-zero pixels, centre ``min + size // 2``,
    half-size ``int(max(dx, dy) * cutout_extent / 2)`` but at least ``min_cutout_size // 2`` (made
    even), cut to the array.

    Parameters
    ----------
    segmap : numpy.ndarray
        2-D map, non-zero on the (single) source.
    cutout_extent, min_cutout_size : float, int
        statmorph's parameters of the same names (its defaults).

    Returns
    -------
    tuple of slice
        ``(rows, columns)`` of the stamp.

    Raises
    ------
    ValueError
        If ``segmap`` has no source pixel.
    """
    rows = np.flatnonzero(np.any(segmap, axis=1))
    cols = np.flatnonzero(np.any(segmap, axis=0))
    if rows.size == 0:
        raise ValueError("the segmentation map has no source pixel")
    ymin, ymax, xmin, xmax = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    dx, dy = xmax + 1 - xmin, ymax + 1 - ymin
    xc, yc = xmin + dx // 2, ymin + dy // 2
    dist = max(int(max(dx, dy) * cutout_extent / 2.0), (min_cutout_size - min_cutout_size % 2) // 2)
    ny, nx = segmap.shape
    return slice(max(0, yc - dist), min(ny, yc + dist)), slice(max(0, xc - dist), min(nx, xc + dist))


_X_POSITIONS = ("xc_centroid", "xc_asymmetry")
_Y_POSITIONS = ("yc_centroid", "yc_asymmetry")


def _clean(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) and v != -99.0 else math.nan


def empty_record() -> dict[str, Any]:
    """A record with every measured value NaN / None and no flags."""
    rec: dict[str, Any] = dict.fromkeys(QUANTITIES, math.nan)
    rec.update({f"{r}_arcsec": math.nan for r in ARCSEC_RADII})
    rec.update(background=math.nan, bkg_rms=math.nan, segment_area=0, saturated_pixels=0, statmorph_flag=None,
               flag_sersic=None, flags=0, runtime_s=math.nan, error=None)
    return rec


def record_from_morphology(morph: statmorph.SourceMorphology, *, fit_sersic: bool = True) -> dict[str, Any]:
    """statmorph's values as a record (NaN for -99 and non-finite values), flags set from its flags.

    With ``fit_sersic=False`` the Sersic values are NaN and ``flag_sersic`` is -1 whatever the object holds.
    """
    rec = empty_record()
    flag = int(morph.flag)
    flag_sersic = int(morph.flag_sersic) if fit_sersic else -1
    rec["statmorph_flag"] = flag
    rec["flag_sersic"] = flag_sersic
    flags = 0
    if flag > 0:
        flags |= Flag.MORPH_STATMORPH_FLAG
    if flag >= 4:  # statmorph aborted: nothing was measured
        rec["flags"] = int(flags)
        return rec
    for name, attr in _STATMORPH_NAMES.items():
        if name in SERSIC_QUANTITIES and flag_sersic != 0:
            continue
        rec[name] = _clean(morph[attr])
    if flag_sersic > 0:
        flags |= Flag.MORPH_SERSIC_FAILED
    rec["flags"] = int(flags)
    return rec


def _with_arcsec(rec: dict[str, Any], pxscale: float | None) -> dict[str, Any]:
    scale = _clean(pxscale) if pxscale is not None else math.nan
    for r in ARCSEC_RADII:
        rec[f"{r}_arcsec"] = rec[r] * scale if scale > 0 else math.nan
    return rec


def measure_plane(
    plane: Plane,
    *,
    pxscale: float | None = None,
    options: MorphOptions | None = None,
    psf: np.ndarray | None = None,
) -> dict[str, Any]:
    """Segment one plane and run statmorph on its central source, under the time limit.

    Parameters
    ----------
    plane : Plane
        From :func:`~features.morphometrics.inputs.measurement_plane`.
    pxscale : float, optional
        Arcsec per pixel, for the ``*_arcsec`` radii (NaN without it).
    options : MorphOptions, optional
    psf : numpy.ndarray, optional
        PSF image in the plane's pixels (used by the Sersic fit).

    Returns
    -------
    dict
        The record: :data:`QUANTITIES`, ``*_arcsec`` radii, ``background``, ``bkg_rms``,
        ``segment_area``, ``saturated_pixels`` (clipped composite pixels in the segment; 0 for flux
        images; sets ``MORPH_SATURATED``), ``statmorph_flag``, ``flag_sersic``, ``flags``, ``runtime_s``, ``error``,
        ``band`` and ``method``. Never raises for a bad galaxy (see the module docstring).
    """
    opt = options or MorphOptions()
    t0 = time.perf_counter()
    seg: Segmentation | None = None
    try:
        with time_limit(opt.time_limit_s):
            seg = segment_central(plane.data, noise_floor=plane.noise_floor, options=opt.segmentation)
            if seg.segmap is None:
                rec = empty_record()
            else:
                cut = opt.cutout and statmorph.__version__ in VERIFIED_STATMORPH
                stamp = statmorph_stamp(seg.segmap) if cut else (slice(None), slice(None))
                image = seg.image[stamp]
                weightmap = None if opt.gain else np.full_like(image, seg.rms)
                morph = run_statmorph(image, seg.segmap[stamp], mask=seg.mask[stamp], weightmap=weightmap,
                                      gain=opt.gain, psf=psf, fit_sersic=opt.fit_sersic, fast=opt.fast)
                rec = record_from_morphology(morph, fit_sersic=opt.fit_sersic)
                for names, offset in ((_X_POSITIONS, stamp[1].start or 0), (_Y_POSITIONS, stamp[0].start or 0)):
                    for name in names:  # back to frame pixels
                        rec[name] += offset
    except MorphTimeout as exc:
        rec = empty_record()
        rec["flags"] = int(Flag.MORPH_TIMED_OUT)
        rec["error"] = f"MorphTimeout: {exc}"
    except Exception as exc:  # one galaxy never stops a batch: flagged, with the reason kept
        rec = empty_record()
        rec["flags"] = int(Flag.MORPH_FAILED)
        rec["error"] = f"{type(exc).__name__}: {exc}"[:500]
    if seg is not None and seg.segmap is not None and plane.clipped is not None:
        n_clipped = int(np.count_nonzero(plane.clipped & (seg.segmap > 0)))
        rec["saturated_pixels"] = n_clipped
        if n_clipped:
            rec["flags"] |= int(Flag.MORPH_SATURATED)
    if seg is not None:
        rec["flags"] |= seg.flags
        rec["background"] = seg.background
        rec["bkg_rms"] = seg.rms
        rec["segment_area"] = seg.area
    rec["runtime_s"] = time.perf_counter() - t0
    rec["band"] = plane.band
    rec["method"] = plane.method
    return _with_arcsec(rec, pxscale)


def measure_image(
    image: np.ndarray,
    *,
    image_kind: str,
    bands: str | None,
    band: str,
    stretch: dict[str, Any] | None = None,
    pxscale: float | None = None,
    options: MorphOptions | None = None,
    psf: np.ndarray | None = None,
) -> dict[str, Any]:
    """:func:`measure_plane` of a stored image's band (see :func:`~features.morphometrics.inputs.measurement_plane`).

    Raises
    ------
    InputError
        Only when ``band`` is not one of the image's bands or the shape is unusable; any other
        problem gives a flagged NaN record.
    """
    try:
        plane = measurement_plane(image, image_kind=image_kind, bands=bands, band=band, stretch=stretch)
    except InputError:
        raise
    except Exception as exc:  # e.g. a stretch that cannot be inverted: flagged, the batch goes on
        rec = _with_arcsec(empty_record(), pxscale)
        rec.update(flags=int(Flag.MORPH_FAILED), error=f"{type(exc).__name__}: {exc}"[:500], band=band,
                   method="unknown", image_kind=image_kind, runtime_s=0.0)
        return rec
    rec = measure_plane(plane, pxscale=pxscale, options=options, psf=psf)
    rec["image_kind"] = image_kind
    return rec
