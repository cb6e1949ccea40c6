"""Sky partitions: a source's galaxies grouped by HEALPix pixel, so a shard is a patch of sky.

HEALPix (Gorski et al. 2005, ApJ 622, 759) cuts the sphere into ``12 * nside**2`` pixels of equal area
(about ``3438 / nside`` arcmin a side); ``nside`` is a power of two. Pixels are numbered in the NESTED
scheme, where the four children of pixel ``p`` at ``2 * nside`` are ``4p .. 4p + 3``, so neighbouring
shards have close numbers. Computed with astropy-healpix. A sky shard's key is
``<source>-hpx<nside>-<pixel>``; row shards keep ``<source>-<index:05d>``. Galaxies without a position
(``POSITION_UNKNOWN``) are in no pixel: their pixel is :data:`UNKNOWN_PIXEL` and their shard
``<source>-hpx<nside>-unknown``, which no cone overlaps.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from features.errors import InputError

__all__ = [
    "MAX_NSIDE",
    "UNKNOWN_PIXEL",
    "check_nside",
    "cone_pixels",
    "healpix_pixels",
    "parse_sky_shard",
    "pixel_rows",
    "row_runs",
    "sky_shard_key",
]

MAX_NSIDE = 2**29
"""Largest HEALPix nside (astropy-healpix's limit; ~0.4 milliarcsec pixels)."""

UNKNOWN_PIXEL = -1
"""The "pixel" of a galaxy without a position; its sky shard key ends in ``-unknown``."""

_SKY_KEY = re.compile(r"(?P<source>[a-z0-9][a-z0-9_.]*)-hpx(?P<nside>\d+)-(?P<pixel>\d+|unknown)")


def check_nside(nside: int) -> int:
    """Return ``nside`` if it is a power of two from 1 to :data:`MAX_NSIDE`, else raise ``InputError``."""
    if isinstance(nside, bool) or not isinstance(nside, (int, np.integer)) or not 1 <= nside <= MAX_NSIDE \
            or nside & (nside - 1):
        raise InputError(f"--healpix-nside must be a power of two from 1 to 2**29 (e.g. 32: ~1.8 deg pixels); "
                         f"got {nside!r}")
    return int(nside)


def healpix_pixels(ra: Sequence[float] | np.ndarray, dec: Sequence[float] | np.ndarray, nside: int) -> np.ndarray:
    """The NESTED HEALPix pixel (int64) of each position (degrees, ICRS).

    A pixel boundary belongs to one pixel only (astropy-healpix's rule), so every galaxy is in exactly
    one pixel. A NaN position (unknown) gets :data:`UNKNOWN_PIXEL`; other positions must be finite
    (sources validate them before registration).
    """
    import astropy.units as u
    from astropy_healpix import lonlat_to_healpix

    nside = check_nside(nside)
    lon = np.asarray(ra, dtype=np.float64) % 360.0
    lat = np.asarray(dec, dtype=np.float64)
    if lon.size == 0:
        return np.zeros(0, dtype=np.int64)
    known = np.isfinite(lon) & np.isfinite(lat)
    out = np.full(lon.shape, UNKNOWN_PIXEL, dtype=np.int64)
    if known.any():
        out[known] = lonlat_to_healpix(lon[known] * u.deg, lat[known] * u.deg, nside, order="nested")
    return out


def cone_pixels(ra0: float, dec0: float, radius_arcsec: float, nside: int) -> np.ndarray:
    """The NESTED pixels that overlap a cone (sorted): the sky shards a cone search or region touches.

    Raises
    ------
    InputError
        A centre off the sky or a radius that is not positive.
    """
    import astropy.units as u
    from astropy_healpix import HEALPix

    if not (np.isfinite(ra0) and np.isfinite(dec0) and -90.0 <= dec0 <= 90.0):
        raise InputError(f"cone centre ({ra0}, {dec0}): ra must be finite and dec in [-90, 90]")
    if not (np.isfinite(radius_arcsec) and radius_arcsec > 0):
        raise InputError(f"cone radius must be a positive number of arcsec; got {radius_arcsec}")
    found = HEALPix(nside=check_nside(nside), order="nested").cone_search_lonlat(
        (ra0 % 360.0) * u.deg, dec0 * u.deg, radius_arcsec * u.arcsec)
    return np.unique(np.asarray(found, dtype=np.int64))


def sky_shard_key(source: str, nside: int, pixel: int) -> str:
    """The Dagster partition key of a sky shard: ``<source>-hpx<nside>-<pixel>`` (e.g. ``demo-hpx8-301``)."""
    return f"{source}-hpx{int(nside)}-{'unknown' if int(pixel) == UNKNOWN_PIXEL else int(pixel)}"


def parse_sky_shard(shard: str) -> tuple[str, int, int] | None:
    """``(source, nside, pixel)`` of a sky shard key, or None for any other key."""
    match = _SKY_KEY.fullmatch(shard)
    if match is None:
        return None
    pixel = UNKNOWN_PIXEL if match["pixel"] == "unknown" else int(match["pixel"])
    return match["source"], int(match["nside"]), pixel


def pixel_rows(ra: np.ndarray, dec: np.ndarray, nside: int, pixel: int) -> np.ndarray:
    """The row indices (ascending) of the positions that fall in ``pixel``."""
    return np.flatnonzero(healpix_pixels(ra, dec, nside) == int(pixel)).astype(np.int64)


def row_runs(rows: Sequence[int] | np.ndarray) -> list[tuple[int, int]]:
    """Ascending rows as ``[start, stop)`` runs of consecutive indices: ``[0, 1, 2, 7]`` -> ``[(0, 3), (7, 8)]``."""
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    if rows.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [rows.size]])
    return [(int(rows[a]), int(rows[b - 1]) + 1) for a, b in zip(starts, stops)]
