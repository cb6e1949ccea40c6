"""Positional cross-match: the nearest catalogue object within a radius, and how many were there.

The separations are great-circle distances from :mod:`astropy.coordinates` (Vincenty formula, exact
at every separation); candidate pairs of two position lists come from a KD-tree on the unit sphere
(:meth:`astropy.coordinates.SkyCoord.search_around_sky`). The SDSS service path already knows which
galaxy each candidate belongs to and only needs :func:`pair_separations`; both paths then choose with
:func:`select_nearest`, so they agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord

__all__ = ["Match", "candidate_pairs", "pair_separations", "select_nearest"]


@dataclass(frozen=True)
class Match:
    """The outcome of a cross-match for ``n`` galaxies.

    Attributes
    ----------
    index : numpy.ndarray of int64
        Row of the chosen catalogue object, ``-1`` where none lies within the search radius.
    sep_arcsec : numpy.ndarray of float64
        Separation of the chosen object (NaN where none).
    n_candidates : numpy.ndarray of int32
        Catalogue objects within the match radius.
    far : numpy.ndarray of bool
        The nearest object lies beyond the match radius (but within the search radius).
    """

    index: np.ndarray
    sep_arcsec: np.ndarray
    n_candidates: np.ndarray
    far: np.ndarray

    @property
    def matched(self) -> np.ndarray:
        """Galaxies with an object within the match radius."""
        return (self.index >= 0) & ~self.far


def _finite(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    return np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90)


def candidate_pairs(
    ra: np.ndarray, dec: np.ndarray, cat_ra: np.ndarray, cat_dec: np.ndarray, search_radius_arcsec: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (galaxy, catalogue object) pair closer than ``search_radius_arcsec``.

    Galaxies without a finite position take part in no pair.

    Returns
    -------
    gal_idx, cat_idx : numpy.ndarray of int64
    sep_arcsec : numpy.ndarray of float64
    """
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    cat_ra, cat_dec = np.asarray(cat_ra, float), np.asarray(cat_dec, float)
    ok_g = np.flatnonzero(_finite(ra, dec))
    ok_c = np.flatnonzero(_finite(cat_ra, cat_dec))
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
    if ok_g.size == 0 or ok_c.size == 0:
        return empty
    gal = SkyCoord(ra[ok_g] * u.deg, dec[ok_g] * u.deg)
    cat = SkyCoord(cat_ra[ok_c] * u.deg, cat_dec[ok_c] * u.deg)
    gi, ci, sep, _ = cat.search_around_sky(gal, search_radius_arcsec * u.arcsec)
    return ok_g[gi].astype(np.int64), ok_c[ci].astype(np.int64), sep.to_value(u.arcsec)


def pair_separations(
    ra: np.ndarray, dec: np.ndarray, gal_idx: np.ndarray, cat_ra: np.ndarray, cat_dec: np.ndarray
) -> np.ndarray:
    """Separation in arcsec between galaxy ``gal_idx[k]`` and candidate ``k`` (NaN if a position is missing)."""
    gal_idx = np.asarray(gal_idx, np.int64)
    if gal_idx.size == 0:
        return np.zeros(0, np.float64)
    g_ra, g_dec = np.asarray(ra, float)[gal_idx], np.asarray(dec, float)[gal_idx]
    c_ra, c_dec = np.asarray(cat_ra, float), np.asarray(cat_dec, float)
    ok = _finite(g_ra, g_dec) & _finite(c_ra, c_dec)
    out = np.full(gal_idx.size, np.nan)
    if ok.any():
        a = SkyCoord(g_ra[ok] * u.deg, g_dec[ok] * u.deg)
        b = SkyCoord(c_ra[ok] * u.deg, c_dec[ok] * u.deg)
        out[ok] = a.separation(b).to_value(u.arcsec)
    return out


def select_nearest(
    n_galaxies: int,
    gal_idx: np.ndarray,
    cat_idx: np.ndarray,
    sep_arcsec: np.ndarray,
    radius_arcsec: float,
    search_radius_arcsec: float | None = None,
) -> Match:
    """Choose, per galaxy, the nearest candidate and count the candidates inside the match radius.

    Parameters
    ----------
    n_galaxies : int
    gal_idx, cat_idx, sep_arcsec : numpy.ndarray
        Candidate pairs (any order; pairs with a NaN separation are ignored).
    radius_arcsec : float
        Match radius: the nearest object within it is the match.
    search_radius_arcsec : float, optional
        Pairs beyond it are ignored; between the two radii the nearest object is kept as a *far*
        match (for reference, not trusted). Defaults to ``radius_arcsec`` (no far matches).

    Returns
    -------
    Match
        Ties in separation go to the lower catalogue row, so the result is deterministic.
    """
    search = radius_arcsec if search_radius_arcsec is None else max(search_radius_arcsec, radius_arcsec)
    gal_idx = np.asarray(gal_idx, np.int64)
    cat_idx = np.asarray(cat_idx, np.int64)
    sep = np.asarray(sep_arcsec, np.float64)
    keep = np.isfinite(sep) & (sep <= search)
    gal_idx, cat_idx, sep = gal_idx[keep], cat_idx[keep], sep[keep]

    index = np.full(n_galaxies, -1, np.int64)
    best = np.full(n_galaxies, np.nan)
    order = np.lexsort((cat_idx, sep, gal_idx))
    g_sorted = gal_idx[order]
    first = np.ones(order.size, bool)
    first[1:] = g_sorted[1:] != g_sorted[:-1]
    chosen = order[first]
    index[gal_idx[chosen]] = cat_idx[chosen]
    best[gal_idx[chosen]] = sep[chosen]
    inside = sep <= radius_arcsec
    n_candidates = np.bincount(gal_idx[inside], minlength=n_galaxies).astype(np.int32)
    far = (index >= 0) & (best > radius_arcsec)
    return Match(index=index, sep_arcsec=best, n_candidates=n_candidates, far=far)
