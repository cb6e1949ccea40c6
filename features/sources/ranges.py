"""What a source's positions, pixel scales and image sizes may be; checked before anything is written.

Every source validates its whole catalogue with these functions in ``validate()``, so a bad value fails
the ingest with one line naming the file, the row and the value, and the warehouse stays as it was.

* Positions are ICRS degrees: ``0 <= ra < 360`` and ``-90 <= dec <= 90``, finite; a folder catalogue may
  leave a position unknown (both NaN, ``unknown_ok``), never half known or out of range.
* A pixel scale is a finite, positive number of arcsec per pixel, or unknown (``None`` / NaN from the
  source itself, never from a typed value: ``--pxscale unknown`` says so).
* An image has at most :data:`MAX_IMAGE_SIDE` pixels per side (a 1024 x 1024 RGB stamp is 3 MB raw;
  survey cut-outs are 64-512 px). Larger files are refused, not stored: a 4000 x 4000 image is a 48 MB
  row that every reader of the shard pays for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from features.errors import InputError

__all__ = ["MAX_IMAGE_SIDE", "check_image_size", "check_positions", "check_pxscale"]

MAX_IMAGE_SIDE = 1024
"""Largest image side (pixels) a source may hold; larger images are refused at ingest."""


def check_positions(ra: Sequence[float] | np.ndarray, dec: Sequence[float] | np.ndarray, where: str,
                    ids: Sequence[str] | None = None, ra_name: str = "ra", dec_name: str = "dec",
                    unknown_ok: bool = False) -> None:
    """Raise :class:`InputError` on the first non-finite or out-of-range position.

    Parameters
    ----------
    ra, dec : array-like of float
        Degrees.
    where : str
        The file, for the message.
    ids : sequence of str, optional
        Native ids, named in the message with the row.
    ra_name, dec_name : str
        Column names, for the message.
    unknown_ok : bool
        Rows whose ra AND dec are both NaN are unknown positions (a catalogue without coordinates,
        flagged ``POSITION_UNKNOWN`` at ingest), not errors; a known position must still be in range.
    """
    unknown = np.isnan(np.asarray(ra, dtype=np.float64)) & np.isnan(np.asarray(dec, dtype=np.float64))
    for name, values, lo, hi, hi_open in ((ra_name, ra, 0.0, 360.0, True), (dec_name, dec, -90.0, 90.0, False)):
        arr = np.asarray(values, dtype=np.float64)
        bad_value = ~np.isfinite(arr) & ~unknown if unknown_ok else ~np.isfinite(arr)
        with np.errstate(invalid="ignore"):
            out = (arr < lo) | ((arr >= hi) if hi_open else (arr > hi))
        bad = np.flatnonzero(bad_value | out)
        if bad.size:
            r = int(bad[0])
            span = f"[{lo:g}, {hi:g})" if hi_open else f"[{lo:g}, {hi:g}]"
            what = "not a finite number" if bad_value[r] else f"outside {span} degrees"
            who = f" (id {ids[r]!r})" if ids is not None else ""
            raise InputError(f"{where}: {name!r} is {arr[r]} ({what}) in row {r}{who}; "
                             f"{bad.size} row(s) out of range")


def check_pxscale(value: float | None, where: str) -> float | None:
    """A pixel scale given by the user: ``None`` (unknown) or a finite positive float, else InputError."""
    if value is None:
        return None
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: pixel scale {value!r} is not a number (arcsec per pixel, or 'unknown')") from None
    if not (math.isfinite(scale) and scale > 0):
        raise InputError(f"{where}: pixel scale must be a positive number of arcsec per pixel, got {value!r} "
                         "(use 'unknown' when it is not known)")
    return scale


def check_image_size(height: int, width: int, where: str, max_side: int = MAX_IMAGE_SIDE) -> None:
    """Raise :class:`InputError` when an image is larger than ``max_side`` pixels on a side."""
    if height > max_side or width > max_side:
        raise InputError(f"{where}: image is {height} x {width} pixels, larger than the {max_side} px per side "
                         "a source may hold; cut stamps around the galaxies first")
