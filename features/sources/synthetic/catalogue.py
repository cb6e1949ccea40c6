"""An SDSS-like photometric catalogue of the demo survey, consistent with the rendered images.

Columns use SDSS ``PhotoObj`` names (``objid``, ``ra``, ``dec``, ``type``, ``clean``, ``modelMag_<b>``,
``modelMagErr_<b>``, ``petroMag_<b>``, ``petroMagErr_<b>``, ``extinction_<b>``, ``petroR50_r``,
``petroR90_r``, ``fracDeV_r``) plus ``specz``, so the photometry stage reads it like a CasJobs export.

How the values are made
-----------------------
* Targets: ``modelMag`` in g, r and z is the magnitude of the rendered, noiseless, PSF-convolved target
  (``truth.mag_<b>``, which includes Galactic extinction like SDSS magnitudes do) plus Gaussian noise of
  the stated error; u and i come from a simple galaxy SED: ``u - g = 0.35 + 1.85 (g - r)`` (clipped to
  0.6-2.4) and ``i = r - 0.55 (r - z)``.
* Errors at SDSS depth: flux error ``sigma_pt = 10^((22.5 - m_lim) / 2.5) / 5`` for 5-sigma point-source
  limits u 22.0, g 22.2, r 22.2, i 21.3, z 20.5 (York et al. 2000), scaled by
  ``sqrt(1 + (r50 / 0.7 arcsec)^2)`` for extended light, with a 0.01 mag calibration floor in quadrature.
* Petrosian: ``petroMag = modelMag + 0.24 fracDeV + 0.02 (1 - fracDeV)`` (the Petrosian aperture misses
  ~20 % of a de Vaucouleurs profile, ~2 % of an exponential; Blanton et al. 2001); ``petroR50_r`` and
  ``petroR90_r`` are the circular 50 / 90 % radii of the rendered r-band target with 5 % scatter;
  ``fracDeV_r`` follows the bulge fraction weighted by how de Vaucouleurs-like the bulge is.
* Positions: the galaxy's position plus 0.15 arcsec Gaussian scatter per axis. About 2 % of targets have
  no entry (``MISSING_FRACTION``, fixed by the seed), ~4 % are not ``clean``, ~0.5 % are typed as stars.
* ``specz``: the true redshift (+ 3e-5 scatter) when ``petroMag_r < 17.77`` (the SDSS main-sample limit)
  for 92 % of those; NaN otherwise.
* Neighbours: field stars (``type`` 6) and background galaxies (``type`` 3) brighter than r = 22.2 are
  listed too, at their sky positions (north up, east left: ``ra`` decreases with the image column,
  ``dec`` decreases with the image row).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from features.errors import InputError
from features.sources.synthetic.galaxy import rng_streams
from features.sources.synthetic.params import EXTINCTION_COEFFS
from features.sources.synthetic.render import PXSCALE

if TYPE_CHECKING:
    from features.sources.synthetic.survey import SyntheticSurvey

__all__ = [
    "CATALOGUE_SCHEMA",
    "MISSING_FRACTION",
    "SDSS_LIMITS",
    "catalogue_table",
    "has_entry",
    "write_photometry_catalogue",
]

SDSS_BANDS = ("u", "g", "r", "i", "z")
SDSS_LIMITS: dict[str, float] = {"u": 22.0, "g": 22.2, "r": 22.2, "i": 21.3, "z": 20.5}
"""5-sigma point-source limiting magnitudes of SDSS imaging (York et al. 2000)."""

MISSING_FRACTION = 0.02
"""Fraction of targets with no catalogue entry."""

CAL_FLOOR = 0.01
OBJID_BASE = 1237660000000000000

CATALOGUE_SCHEMA = pa.schema(
    [pa.field("objid", pa.int64(), nullable=False), pa.field("ra", pa.float64()), pa.field("dec", pa.float64()),
     pa.field("type", pa.int16()), pa.field("clean", pa.int16())]
    + [pa.field(f"modelMag_{b}", pa.float64()) for b in SDSS_BANDS]
    + [pa.field(f"modelMagErr_{b}", pa.float64()) for b in SDSS_BANDS]
    + [pa.field(f"petroMag_{b}", pa.float64()) for b in SDSS_BANDS]
    + [pa.field(f"petroMagErr_{b}", pa.float64()) for b in SDSS_BANDS]
    + [pa.field(f"extinction_{b}", pa.float64()) for b in SDSS_BANDS]
    + [pa.field("petroR50_r", pa.float64()), pa.field("petroR90_r", pa.float64()),
       pa.field("fracDeV_r", pa.float64()), pa.field("specz", pa.float64())]
)
"""Columns of the catalogue, in file order."""


def _sed(g: float, r: float, z: float) -> dict[str, float]:
    u = g + float(np.clip(0.35 + 1.85 * (g - r), 0.6, 2.4))
    return {"u": u, "g": g, "r": r, "i": r - 0.55 * (r - z), "z": z}


def _errors(mags: dict[str, float], r50: float) -> dict[str, float]:
    ext = math.sqrt(1.0 + (r50 / 0.7) ** 2) if math.isfinite(r50) else 1.0
    out = {}
    for b, m in mags.items():
        sigma_f = 10 ** ((22.5 - SDSS_LIMITS[b]) / 2.5) / 5.0 * ext
        f = 10 ** ((22.5 - m) / 2.5)
        out[b] = math.sqrt((1.0857 * sigma_f / f) ** 2 + CAL_FLOOR**2)
    return out


def _row(objid: int, ra: float, dec: float, typ: int, clean: int, mags: dict[str, float], r50: float,
         r90: float, frac_dev: float, ebv: float, specz: float, rng: np.random.Generator) -> dict:
    err = _errors(mags, r50)
    rec: dict = {"objid": objid, "ra": ra, "dec": dec, "type": typ, "clean": clean}
    petro_off = 0.24 * frac_dev + 0.02 * (1.0 - frac_dev)
    noise = rng.standard_normal(10)
    for k, b in enumerate(SDSS_BANDS):
        rec[f"modelMag_{b}"] = mags[b] + err[b] * noise[k]
        rec[f"modelMagErr_{b}"] = err[b]
        rec[f"petroMag_{b}"] = mags[b] + petro_off + 1.2 * err[b] * noise[5 + k]
        rec[f"petroMagErr_{b}"] = 1.2 * err[b]
        rec[f"extinction_{b}"] = EXTINCTION_COEFFS[b] * ebv
    rec["petroR50_r"] = r50
    rec["petroR90_r"] = r90
    rec["fracDeV_r"] = frac_dev
    rec["specz"] = specz
    return rec


def has_entry(seed: int, row: int) -> bool:
    """Whether row ``row`` of a survey with seed ``seed`` has a catalogue entry (about 98 % do)."""
    return bool(_row_uniforms(seed, row)[1][0] >= MISSING_FRACTION)


def _row_uniforms(seed: int, row: int) -> tuple[np.random.Generator, np.ndarray]:
    rng = rng_streams(seed, row)[2]
    return rng, rng.uniform(size=8)


def catalogue_table(survey: SyntheticSurvey, start: int = 0, stop: int | None = None,
                    workers: int | None = None) -> pa.Table:
    """The catalogue of rows ``[start, stop)`` as a table (see the module docstring)."""
    stop = len(survey) if stop is None else stop
    rows: list[dict] = []
    for i, (truth, field) in zip(range(start, stop), survey.truth_records(start, stop, workers)):
        rng, u = _row_uniforms(survey.seed, i)
        ebv = truth["ebv"]
        cos_dec = math.cos(math.radians(truth["dec"]))
        if u[0] >= MISSING_FRACTION:
            mags = _sed(truth["mag_g"], truth["mag_r"], truth["mag_z"])
            bt = truth["bulge_to_total"]
            n = truth["bulge_n"]
            dev = bt * min(max((n - 1.0) / 3.0, 0.0), 1.0) if math.isfinite(n) else 0.0
            frac_dev = float(np.clip(dev + 0.08 * (u[1] - 0.5) * 2.0, 0.0, 1.0))
            scatter = 1.0 + 0.05 * rng.standard_normal(2)
            r50 = truth["r50_arcsec"] * scatter[0]
            r90 = max(truth["r90_arcsec"] * scatter[1], r50)
            dpos = rng.normal(0.0, 0.15, 2) / 3600.0
            rec = _row(OBJID_BASE + 100 * i, truth["ra"] + dpos[0] / cos_dec, truth["dec"] + dpos[1],
                       6 if u[2] < 0.005 else 3, 0 if u[3] < 0.04 else 1, mags, r50, r90, frac_dev, ebv,
                       math.nan, rng)
            if rec["petroMag_r"] < 17.77 and u[4] < 0.92:
                rec["specz"] = truth["redshift"] + 3e-5 * rng.standard_normal()
            rows.append(rec)
        cx, cy = truth["centre_x_px"], truth["centre_y_px"]
        for k, obj in enumerate(field[:99]):
            if obj.mag_r >= SDSS_LIMITS["r"]:
                continue
            z = obj.mag_r - obj.r_z
            mags = _sed(obj.mag_r + obj.g_r, obj.mag_r, z)
            r50 = obj.hlr_arcsec if obj.kind == "galaxy" else 0.6
            ra = truth["ra"] - (obj.x_px - cx) * PXSCALE / 3600.0 / cos_dec
            dec = truth["dec"] - (obj.y_px - cy) * PXSCALE / 3600.0
            rows.append(_row(OBJID_BASE + 100 * i + k + 1, ra, dec, 3 if obj.kind == "galaxy" else 6, 1, mags,
                             r50, 1.8 * r50, 0.5 if obj.kind == "galaxy" else 0.0, ebv, math.nan, rng))
    return pa.Table.from_pylist(rows, schema=CATALOGUE_SCHEMA)


def write_photometry_catalogue(survey: SyntheticSurvey, path: str | Path, start: int = 0,
                               stop: int | None = None, workers: int | None = None) -> Path:
    """Write the SDSS-like catalogue of rows ``[start, stop)`` to ``path``.

    Parameters
    ----------
    survey : SyntheticSurvey
    path : str or pathlib.Path
        ``*.parquet`` (Parquet) or ``*.csv`` (CSV with a header; NaN written as ``nan``).
    start, stop : int
        Row range of the survey (default: all).
    workers : int, optional
        Render processes for rows not rendered yet (see :meth:`SyntheticSurvey.iter_batches`).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise InputError(f"{path}: the catalogue must end in .parquet or .csv")
    table = catalogue_table(survey, start, stop, workers)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    else:
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    return path
