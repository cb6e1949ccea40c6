"""Photometry: SDSS cross-match (astroquery SkyServer) or catalogue files, quality cuts, colours.

Modules, one job each: :mod:`~features.photometry.columns` (canonical SDSS column names and mapping),
:mod:`~features.photometry.catalogue` (CSV / FITS / Parquet reading and validation),
:mod:`~features.photometry.crossmatch` (astropy positional match),
:mod:`~features.photometry.sdss` (the SkyServer client: batching, retries, rate limit, cache),
:mod:`~features.photometry.quality` (flags, colours, absolute magnitudes) and
:mod:`~features.photometry.pipeline` (the two entry points used by the Dagster asset and the CLI).
"""

from features.photometry.catalogue import Catalogue, read_catalogue, validate_columns
from features.photometry.columns import BANDS, CANONICAL, COLOURS, REQUIRED
from features.photometry.crossmatch import Match, candidate_pairs, pair_separations, select_nearest
from features.photometry.pipeline import (
    MatchConfig,
    PhotometryResult,
    photometry_absent,
    photometry_from_catalogue,
    photometry_from_sdss,
    summarize,
)
from features.photometry.quality import COLOUR_RANGES, QualityConfig
from features.photometry.sdss import FetchReport, SDSSConfig, ServiceError, SkyServerClient

__all__ = [
    "BANDS",
    "CANONICAL",
    "COLOURS",
    "COLOUR_RANGES",
    "REQUIRED",
    "Catalogue",
    "FetchReport",
    "Match",
    "MatchConfig",
    "PhotometryResult",
    "QualityConfig",
    "SDSSConfig",
    "ServiceError",
    "SkyServerClient",
    "candidate_pairs",
    "pair_separations",
    "photometry_absent",
    "photometry_from_catalogue",
    "photometry_from_sdss",
    "read_catalogue",
    "select_nearest",
    "summarize",
    "validate_columns",
]
