"""What the pixels are: turn a stored image into the 2-D plane that morphometrics measure.

Non-parametric statistics (Gini, M20, CAS, MID) are defined on *flux*: Gini and M20 rank pixels by flux,
the concentration takes ratios of flux radii and the asymmetry subtracts fluxes. Stored images come in
three kinds and each is measured in a documented way, recorded in the ``method`` column:

``flux`` (``image_kind="flux"``, e.g. FITS cutouts)
    The band's channel as it is (background is subtracted later).
``inverted_stretch`` (``image_kind="rgb_composite"`` with a known stretch, the demo survey)
    The composite is mapped back to flux with ``features.sources.synthetic.invert_stretch`` (exact up to
    8-bit quantisation and clipping at 0 and 255), then the band's channel is taken.
``channel_proxy`` (``image_kind="rgb_composite"`` without a stretch, e.g. Galaxy10 DECaLS, PNG folders)
    The band's 8-bit channel value as a monotonic *proxy* for flux. DECaLS composites use an asinh
    stretch (Lupton et al. 1999) which is close to linear for faint pixels and compresses bright ones;
    so proxy concentrations, Gini and M20 are systematically lower than flux-based ones for bright
    cores, but galaxies rank in the same order. Compare proxy values with each other, not with flux
    measurements from the literature.
``luminance_proxy``
    Band ``"luminance"``: the mean of all channels (composites) or of all flux bands, for a deeper image
    when no single band is wanted.

The measurement band is named as in the ``images.bands`` column (e.g. ``"r"`` of ``"z,r,g"``), or
``"luminance"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from features.errors import InputError

__all__ = ["LUMINANCE", "METHODS", "Plane", "measurement_plane", "parse_bands"]

LUMINANCE = "luminance"
"""Band name of the mean over all channels."""

METHODS = ("flux", "inverted_stretch", "channel_proxy", "luminance_proxy")
"""Values of the ``method`` column (see the module docstring)."""

QUANTISATION_RMS = 1.0 / np.sqrt(12.0)
"""RMS of rounding to integers: the smallest noise an 8-bit channel can carry."""


@dataclass(frozen=True)
class Plane:
    """A 2-D image ready for background subtraction and segmentation.

    Attributes
    ----------
    data : numpy.ndarray
        ``(H, W)`` float64; may hold NaN where the input did.
    band : str
        The measured band (or ``"luminance"``).
    method : str
        One of :data:`METHODS`.
    noise_floor : float
        The smallest plausible per-pixel noise in ``data`` units (8-bit quantisation for proxies, 0
        otherwise); the background RMS is never taken below it.
    clipped : numpy.ndarray or None
        For composites, True where the channel (any channel for ``"luminance"``) sits at the clip level
        (255): the stretch lost the flux there.
    """

    data: np.ndarray
    band: str
    method: str
    noise_floor: float = 0.0
    clipped: np.ndarray | None = None


def parse_bands(bands: str | None, n_channels: int) -> list[str]:
    """The band of each channel from the ``images.bands`` string (``"z,r,g"``).

    A missing string names the channels ``c0, c1, ...``.
    """
    names = [b.strip() for b in (bands or "").split(",") if b.strip()]
    if not names:
        return [f"c{i}" for i in range(n_channels)]
    if len(names) != n_channels:
        raise InputError(f"bands {bands!r} name {len(names)} channel(s) but the image has {n_channels}")
    return names


def _invert(image: np.ndarray, stretch: dict[str, Any]) -> np.ndarray:
    """Call the demo survey's ``invert_stretch`` (imported lazily: it needs galsim)."""
    try:
        from features.sources import synthetic

        invert = synthetic.invert_stretch
    except (ImportError, AttributeError):
        from features.sources.synthetic.observe import invert_stretch as invert
    return np.asarray(invert(image, stretch), dtype=np.float64)


def measurement_plane(
    image: np.ndarray,
    *,
    image_kind: str,
    bands: str | None,
    band: str,
    stretch: dict[str, Any] | None = None,
) -> Plane:
    """The plane to measure for one galaxy and band.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` as returned by ``Warehouse.read_images``.
    image_kind : {"rgb_composite", "flux"}
        The ``images.image_kind`` column.
    bands : str or None
        The ``images.bands`` column, e.g. ``"z,r,g"``.
    band : str
        A band named in ``bands``, or ``"luminance"`` for the mean of all channels.
    stretch : dict, optional
        The decoded ``images.stretch_json``; when given for a composite, the stretch is inverted.

    Returns
    -------
    Plane

    Raises
    ------
    InputError
        If the band is not among the image's bands, the image is not 2-D or 3-D, or the kind is unknown.
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or min(arr.shape[:2]) < 8:
        raise InputError(f"cannot measure an image of shape {np.shape(image)}: expected (H, W[, C]), H, W >= 8")
    names = parse_bands(bands, arr.shape[2])
    if band != LUMINANCE and band not in names:
        raise InputError(f"band {band!r} is not in this image's bands {names} (or use {LUMINANCE!r})")

    if image_kind == "flux":
        flux, method, floor = arr.astype(np.float64), "flux", 0.0
    elif image_kind == "rgb_composite":
        if stretch:
            flux, method, floor = _invert(arr, stretch), "inverted_stretch", 0.0
        else:
            flux, method, floor = arr.astype(np.float64), "channel_proxy", QUANTISATION_RMS
    else:
        raise InputError(f"unknown image_kind {image_kind!r}; expected 'rgb_composite' or 'flux'")

    clipped = None
    if image_kind == "rgb_composite":
        top = float((stretch or {}).get("max_value", 255))
        at_top = arr >= top
    if band == LUMINANCE:
        data = flux.mean(axis=2)
        if method == "channel_proxy":
            method = "luminance_proxy"
            floor = QUANTISATION_RMS / np.sqrt(arr.shape[2])
        if image_kind == "rgb_composite":
            clipped = at_top.any(axis=2)
    else:
        data = flux[:, :, names.index(band)]
        if image_kind == "rgb_composite":
            clipped = at_top[:, :, names.index(band)]
    return Plane(data=np.ascontiguousarray(data, dtype=np.float64), band=band, method=method, noise_floor=floor,
                 clipped=clipped)
