"""Quality cuts, extinction-corrected colours and absolute magnitudes for matched photometry.

The research code this replaces kept every match and every magnitude, so its g-r ran from -5 to +9.
Here each galaxy gets a bit field from :class:`features.flags.Flag` (``PHOT_*``), and values that the
cuts reject are NaN rather than numbers nobody should trust:

* colours use SDSS model magnitudes (the recommended colour magnitudes, Stoughton et al. 2002, AJ 123,
  485) corrected for Galactic extinction (``extinction_x``, Schlegel, Finkbeiner & Davis 1998):
  ``c = (m1 - A1) - (m2 - A2)``; a colour is NaN if either band is missing or has an error above
  ``mag_err_max`` (0.2 mag, i.e. S/N below about 5.4 since sigma_m = 1.0857 / SNR), and for far matches;
* ``quality_ok`` marks a galaxy whose g-r can be trusted: matched inside the radius, clean, classified
  a galaxy, g-r finite;
* the absolute magnitude ``M_r = petroMag_r - A_r - DM(z)`` (Planck 2018 distance modulus, no
  K-correction: about 0.1-0.3 mag at z < 0.2) exists only where a redshift does, and says which one
  (``abs_mag_source``: ``sdss_specz`` or ``catalogue_redshift``). It encodes the survey's selection
  (a flux limit becomes a luminosity limit that rises with z), so it is never a classifier input by
  default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from features.flags import Flag
from features.photometry.columns import BANDS, CANONICAL, COLOURS, MAG_COLUMNS, MAG_ERR_COLUMNS

__all__ = [
    "COLOUR_RANGES",
    "QualityConfig",
    "absolute_magnitude",
    "assemble",
    "colours",
    "quality_flags",
]

COLOUR_RANGES: dict[str, tuple[float, float]] = {
    "u_g": (-0.5, 3.0),
    "g_r": (-0.5, 2.0),
    "r_i": (-0.5, 1.5),
    "i_z": (-1.0, 1.5),
    "u_r": (-0.5, 4.5),
}
"""Plausible colours of galaxies at z < 0.5 (the range the asset check counts as sane)."""


@dataclass(frozen=True)
class QualityConfig:
    """Quality-cut parameters.

    Attributes
    ----------
    mag_err_max : float
        Largest accepted ``modelMagErr`` per band (mag).
    galaxy_type : int
        SDSS photometric type of a galaxy (3).
    """

    mag_err_max: float = 0.2
    galaxy_type: int = 3


def colours(cols: dict[str, np.ndarray], usable: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Extinction-corrected model colours; NaN where either band is not usable.

    Parameters
    ----------
    cols : dict
        Canonical columns (``modelMag_x``, ``extinction_x``).
    usable : dict of band to bool array
        Whether each band's magnitude may be used.

    Returns
    -------
    dict
        ``{"u_g": ..., "g_r": ..., "r_i": ..., "i_z": ..., "u_r": ...}``.
    """
    dered = {b: cols[f"modelMag_{b}"] - cols[f"extinction_{b}"] for b in BANDS}
    out = {}
    for name, (b1, b2) in COLOURS.items():
        c = dered[b1] - dered[b2]
        out[name] = np.where(usable[b1] & usable[b2], c, np.nan)
    return out


def absolute_magnitude(app_mag: np.ndarray, redshift: np.ndarray) -> np.ndarray:
    """``M = m - DM(z)`` with the Planck 2018 distance modulus; NaN where ``z <= 0`` or unknown."""
    from astropy.cosmology import Planck18

    app_mag = np.asarray(app_mag, float)
    z = np.asarray(redshift, float)
    ok = np.isfinite(app_mag) & np.isfinite(z) & (z > 0)
    out = np.full(app_mag.shape, np.nan)
    if ok.any():
        out[ok] = app_mag[ok] - Planck18.distmod(z[ok]).value
    return out


def quality_flags(
    cols: dict[str, np.ndarray],
    matched: np.ndarray,
    far: np.ndarray,
    n_candidates: np.ndarray,
    failed: np.ndarray,
    config: QualityConfig,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The ``PHOT_*`` bit field of each galaxy and the usable bands.

    ``clean`` or ``type`` unknown (NaN, e.g. a catalogue without those columns) set no flag: the cut
    cannot be judged, and the absent column is named in the run's metadata instead.

    Returns
    -------
    flags : numpy.ndarray of int64
    usable : dict of band to bool array
        Matched inside the radius, magnitude and error finite, error <= ``mag_err_max``.
    """
    n = matched.size
    flags = np.zeros(n, np.int64)
    has = matched | far
    flags[~has & ~failed] |= int(Flag.PHOT_NO_MATCH)
    flags[failed] |= int(Flag.PHOT_QUERY_FAILED)
    flags[far] |= int(Flag.PHOT_MATCH_FAR)
    flags[has & (n_candidates > 1)] |= int(Flag.PHOT_MULTIPLE_CANDIDATES)
    clean, typ = cols["clean"], cols["type"]
    flags[has & np.isfinite(clean) & (clean != 1)] |= int(Flag.PHOT_NOT_CLEAN)
    flags[has & np.isfinite(typ) & (typ != config.galaxy_type)] |= int(Flag.PHOT_NOT_GALAXY)
    missing = np.zeros(n, bool)
    high = np.zeros(n, bool)
    usable = {}
    for band, mag, err in zip(BANDS, MAG_COLUMNS, MAG_ERR_COLUMNS):
        m, e = cols[mag], cols[err]
        finite = np.isfinite(m) & np.isfinite(e)
        missing |= has & ~finite
        too_big = finite & (e > config.mag_err_max)
        high |= has & too_big
        usable[band] = matched & finite & ~too_big
    flags[missing] |= int(Flag.PHOT_MAG_MISSING)
    flags[high] |= int(Flag.PHOT_MAG_ERR_HIGH)
    return flags, usable


def _nullable_int(values: np.ndarray, valid: np.ndarray, type_: pa.DataType) -> pa.Array:
    vals = np.where(valid & np.isfinite(values.astype(float)), values, 0)
    mask = ~(valid & np.isfinite(values.astype(float)))
    return pa.array(vals.astype(np.int64), mask=mask).cast(type_)


def assemble(
    *,
    galaxy_ids: list[str],
    shard: str,
    source: str,
    cols: dict[str, np.ndarray],
    sep_arcsec: np.ndarray,
    n_candidates: np.ndarray,
    matched: np.ndarray,
    far: np.ndarray,
    failed: np.ndarray,
    redshift: np.ndarray,
    config: QualityConfig,
) -> pa.Table:
    """One ``photometry`` row per galaxy (the columns of ``warehouse.schemas.photometry``).

    Parameters
    ----------
    cols : dict
        Canonical columns of the chosen object per galaxy (NaN / objid -1 where none).
    matched, far, failed : numpy.ndarray of bool
        Match inside the radius; nearest only beyond it; the service failed for this galaxy.
    redshift : numpy.ndarray
        The galaxies' own catalogue redshift (NaN where none), used for ``abs_mag_r`` only where SDSS
        has no spectroscopic redshift.
    """
    n = len(galaxy_ids)
    has = matched | far
    flags, usable = quality_flags(cols, matched, far, n_candidates, failed, config)
    col = colours(cols, usable)

    specz = np.where(has, cols["specz"], np.nan)
    use_specz = matched & np.isfinite(specz) & (specz > 0)
    z_cat = np.asarray(redshift, float)
    use_cat = matched & ~use_specz & np.isfinite(z_cat) & (z_cat > 0)
    z_used = np.where(use_specz, specz, np.where(use_cat, z_cat, np.nan))
    abs_r = absolute_magnitude(cols["petroMag_r"] - cols["extinction_r"], z_used)
    abs_src = [("sdss_specz" if s else "catalogue_redshift" if c else None) if np.isfinite(a) else None
               for s, c, a in zip(use_specz, use_cat, abs_r)]
    abs_z = np.where(np.isfinite(abs_r), z_used, np.nan)

    bad = int(Flag.PHOT_NOT_CLEAN | Flag.PHOT_NOT_GALAXY | Flag.PHOT_QUERY_FAILED)
    quality_ok = matched & ((flags & bad) == 0) & np.isfinite(col["g_r"])

    data: dict[str, pa.Array] = {
        "galaxy_id": pa.array(galaxy_ids, pa.string()),
        "shard": pa.array([shard] * n, pa.string()),
        "source": pa.array([source] * n, pa.string()),
        "objid": _nullable_int(cols["objid"], has, pa.int64()),
        "sep_arcsec": pa.array(np.where(has, sep_arcsec, np.nan), pa.float64()),
        "n_candidates": pa.array(np.asarray(n_candidates, np.int32), pa.int32()),
        "type": _nullable_int(cols["type"], has, pa.int16()),
        "clean": _nullable_int(cols["clean"], has, pa.int16()),
    }
    for name in CANONICAL:
        if name in ("objid", "ra", "dec", "type", "clean"):
            continue
        data[name] = pa.array(np.where(has, cols[name], np.nan), pa.float64())
    for name in COLOURS:
        data[name] = pa.array(col[name], pa.float64())
    data["abs_mag_r"] = pa.array(abs_r, pa.float64())
    data["abs_mag_source"] = pa.array(abs_src, pa.string())
    data["abs_mag_redshift"] = pa.array(abs_z, pa.float64())
    data["quality_ok"] = pa.array(quality_ok, pa.bool_())
    data["flags"] = pa.array(flags, pa.int64())
    return pa.table(data)
