"""Photometry for a set of galaxies: cross-match, quality cuts, one table row per galaxy.

Two entry points share everything after the candidates are known: :func:`photometry_from_catalogue`
(a file, via :mod:`features.photometry.catalogue`) and :func:`photometry_from_sdss` (the SkyServer
client of :mod:`features.photometry.sdss`). A galaxy without a match still gets a row (NaN and
``PHOT_NO_MATCH``), so a missing modality is named, never silently absent. A galaxy without a position
is cross-matched with nothing (no request is made for it) and its row carries ``POSITION_UNKNOWN``
instead of ``PHOT_NO_MATCH``; :func:`photometry_absent` gives the rows of galaxies whose photometry
cannot be had at all (the service unreachable offline): NaN with ``PHOT_QUERY_FAILED``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from features.flags import Flag
from features.photometry.catalogue import Catalogue
from features.photometry.columns import CANONICAL, COLOURS
from features.photometry.crossmatch import Match, candidate_pairs, pair_separations, select_nearest
from features.photometry.quality import COLOUR_RANGES, QualityConfig, assemble
from features.photometry.sdss import SkyServerClient

__all__ = [
    "MatchConfig",
    "PhotometryResult",
    "photometry_absent",
    "photometry_from_catalogue",
    "photometry_from_sdss",
    "summarize",
]


@dataclass(frozen=True)
class MatchConfig:
    """Cross-match radii (arcsec).

    Attributes
    ----------
    radius_arcsec : float
        The nearest object within this radius is the match (1.5 arcsec: about one SDSS seeing FWHM,
        and well above the ~0.1 arcsec astrometric difference between DECaLS and SDSS).
    search_radius_arcsec : float
        Beyond the radius and within this, the nearest object is a *far* match (``PHOT_MATCH_FAR``).
    """

    radius_arcsec: float = 1.5
    search_radius_arcsec: float = 3.0


@dataclass
class PhotometryResult:
    """The ``photometry`` rows of a set of galaxies and a summary for metadata and checks."""

    table: pa.Table
    summary: dict[str, object] = field(default_factory=dict)


def summarize(table: pa.Table) -> dict[str, object]:
    """Counts and rates of a photometry table: match rate, quality pass rate, colour statistics.

    ``colour_in_range_<c>`` is the fraction of finite colours among ``quality_ok`` rows that lie in
    :data:`features.photometry.quality.COLOUR_RANGES` (NaN when there are none).
    """
    flags = np.asarray(table.column("flags").to_numpy(zero_copy_only=False), np.int64)
    ok = np.asarray(table.column("quality_ok").to_numpy(zero_copy_only=False), bool)
    placed = (flags & int(Flag.POSITION_UNKNOWN)) == 0  # the rates count galaxies that could be matched
    n = int(placed.sum())
    matched = placed & ((flags & int(Flag.PHOT_NO_MATCH | Flag.PHOT_MATCH_FAR | Flag.PHOT_QUERY_FAILED)) == 0)
    out: dict[str, object] = {
        "n_galaxies": table.num_rows,
        "n_position_unknown": int(table.num_rows - n),
        "n_matched": int(matched.sum()),
        "match_rate": float(matched.sum() / n) if n else float("nan"),
        "n_quality_ok": int(ok.sum()),
        "quality_pass_rate": float(ok[placed].sum() / n) if n else float("nan"),
    }
    for flag in Flag:
        if flag.name.startswith("PHOT_"):
            out[f"n_{flag.name.lower()}"] = int(((flags & int(flag)) != 0).sum())
    for name in COLOURS:
        c = np.asarray(table.column(name).to_numpy(zero_copy_only=False), float)[ok]
        c = c[np.isfinite(c)]
        lo, hi = COLOUR_RANGES[name]
        out[f"colour_in_range_{name}"] = float(((c >= lo) & (c <= hi)).mean()) if c.size else float("nan")
        out[f"median_{name}"] = float(np.median(c)) if c.size else float("nan")
    return out


def _finish(
    galaxy_ids: Sequence[str],
    shard: str,
    source: str,
    cat: Catalogue,
    match: Match,
    failed: np.ndarray,
    redshift: np.ndarray,
    quality: QualityConfig,
    known: np.ndarray,
) -> PhotometryResult:
    cols = cat.take(match.index)
    table = assemble(
        galaxy_ids=list(galaxy_ids),
        shard=shard,
        source=source,
        cols=cols,
        sep_arcsec=match.sep_arcsec,
        n_candidates=match.n_candidates,
        matched=match.matched & ~failed,
        far=match.far & ~failed,
        failed=failed,
        redshift=redshift,
        config=quality,
    )
    if not known.all():  # no position: not "no match", a cross-match that could not be tried
        flags = np.asarray(table.column("flags").to_numpy(zero_copy_only=False), np.int64)
        flags = np.where(known, flags, int(Flag.POSITION_UNKNOWN))
        table = table.set_column(table.schema.get_field_index("flags"), "flags", pa.array(flags, pa.int64()))
    summary = summarize(table)
    summary["source"] = source
    summary["absent_columns"] = list(cat.absent)
    return PhotometryResult(table=table, summary=summary)


def _check_inputs(galaxy_ids: Sequence[str], ra: np.ndarray, dec: np.ndarray, redshift: np.ndarray | None):
    n = len(galaxy_ids)
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    z = np.full(n, np.nan) if redshift is None else np.asarray(redshift, float)
    if not (ra.shape == dec.shape == z.shape == (n,)):
        raise ValueError(f"galaxy_ids ({n}), ra {ra.shape}, dec {dec.shape}, redshift {z.shape} differ in length")
    return ra, dec, z, np.isfinite(ra) & np.isfinite(dec)


def _no_match(n: int) -> Match:
    return Match(index=np.full(n, -1, np.int64), sep_arcsec=np.full(n, np.nan), n_candidates=np.zeros(n, np.int32),
                 far=np.zeros(n, bool))


def photometry_absent(
    galaxy_ids: Sequence[str],
    ra: np.ndarray,
    dec: np.ndarray,
    redshift: np.ndarray | None = None,
    *,
    service: str,
    shard: str = "",
    quality: QualityConfig | None = None,
) -> PhotometryResult:
    """The rows of galaxies whose photometry cannot be had now (e.g. SDSS unreachable offline).

    Every value is NaN: ``PHOT_QUERY_FAILED`` (unknown, asked again by the next run) for a galaxy with a
    position, ``POSITION_UNKNOWN`` for one without. ``source`` is ``service``.
    """
    ra, dec, z, known = _check_inputs(galaxy_ids, ra, dec, redshift)
    n = len(galaxy_ids)
    cat = Catalogue(name=service, columns={c: np.zeros(0, np.int64 if c == "objid" else np.float64) for c in CANONICAL})
    return _finish(galaxy_ids, shard, service, cat, _no_match(n), known.copy(), z, quality or QualityConfig(), known)


def photometry_from_catalogue(
    galaxy_ids: Sequence[str],
    ra: np.ndarray,
    dec: np.ndarray,
    redshift: np.ndarray | None = None,
    *,
    catalogue: Catalogue,
    shard: str = "",
    match: MatchConfig | None = None,
    quality: QualityConfig | None = None,
) -> PhotometryResult:
    """Cross-match galaxies against a validated catalogue and apply the quality cuts.

    Returns
    -------
    PhotometryResult
        One row per galaxy, ``source = "catalogue:<file name>"``.
    """
    match = match or MatchConfig()
    ra, dec, z, known = _check_inputs(galaxy_ids, ra, dec, redshift)
    gi, ci, sep = candidate_pairs(ra, dec, catalogue.columns["ra"], catalogue.columns["dec"], match.search_radius_arcsec)
    m = select_nearest(len(galaxy_ids), gi, ci, sep, match.radius_arcsec, match.search_radius_arcsec)
    source = f"catalogue:{Path(catalogue.name).name}"
    return _finish(galaxy_ids, shard, source, catalogue, m, np.zeros(len(galaxy_ids), bool), z,
                   quality or QualityConfig(), known)


def photometry_from_sdss(
    galaxy_ids: Sequence[str],
    ra: np.ndarray,
    dec: np.ndarray,
    redshift: np.ndarray | None = None,
    *,
    client: SkyServerClient,
    shard: str = "",
    match: MatchConfig | None = None,
    quality: QualityConfig | None = None,
) -> PhotometryResult:
    """Cross-match galaxies against SDSS through the SkyServer client and apply the quality cuts.

    The server searches ``client.config.search_radius_arcsec``; separations are recomputed here with
    astropy so both paths choose the same way. ``summary["fetch"]`` holds the client's accounting.

    Raises
    ------
    features.errors.OfflineError
        See :meth:`features.photometry.sdss.SkyServerClient.fetch`.
    """
    match = match or MatchConfig()
    ra, dec, z, known = _check_inputs(galaxy_ids, ra, dec, redshift)
    placed = np.flatnonzero(known)  # only galaxies with a position are asked for
    cand, report = client.fetch(ra[placed], dec[placed])
    gal_idx = placed[cand.gal_idx]
    failed = np.zeros(len(galaxy_ids), bool)
    failed[placed] = cand.failed
    sep = pair_separations(ra, dec, gal_idx, cand.columns["ra"], cand.columns["dec"])
    search = min(match.search_radius_arcsec, client.config.search_radius_arcsec)
    m = select_nearest(len(galaxy_ids), gal_idx, np.arange(gal_idx.size), sep, match.radius_arcsec, search)
    cat = Catalogue(name=client.config.service_name, columns=cand.columns)
    result = _finish(galaxy_ids, shard, client.config.service_name, cat, m, failed, z, quality or QualityConfig(),
                     known)
    result.summary["fetch"] = report.as_dict()
    return result
