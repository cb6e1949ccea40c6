"""The photometry stage: where a source's photometry comes from (its catalogue file, the demo's own, else
SDSS), and :func:`match_shard`, which cross-matches one shard and returns a :class:`ShardPhotometry`."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from features.errors import InputError, OfflineError
from stages.results import StageResult
from warehouse import Warehouse, quote

if TYPE_CHECKING:
    from features.sources.synthetic import SyntheticSurvey

__all__ = ["ShardPhotometry", "catalogue_for_source", "demo_catalogue", "match_shard"]


def catalogue_for_source(wh: Warehouse, source: str, override: str = "") -> Path | None:
    """The catalogue file for a source (by name): ``override``, else ``photometry_catalog`` in its params_json.

    A relative path is looked up under the warehouse root, then the working directory. ``None`` means
    "use the SDSS service".

    Raises
    ------
    InputError
        If a named file does not exist (both places are named).
    """
    name = override
    if not name and wh.exists("sources"):
        rows = wh.read("sources", columns=["params_json"], where=f"source = {quote(source)}").to_pylist()
        if rows and rows[0]["params_json"]:
            try:
                name = json.loads(rows[0]["params_json"]).get("photometry_catalog") or ""
            except json.JSONDecodeError as exc:
                raise InputError(f"sources row {source!r}: params_json is not JSON: {exc}") from None
    if not name:
        return None
    path = Path(name).expanduser()
    candidates = [path] if path.is_absolute() else [wh.local_root / path, Path.cwd() / path]
    for p in candidates:
        if p.is_file():
            return p
    raise InputError(f"photometry catalogue for source {source!r} not found: {', '.join(map(str, candidates))}")


def demo_catalogue(wh: Warehouse, survey: SyntheticSurvey) -> Path:
    """The demo survey's SDSS-like photometry catalogue, written once per (n, seed) under the cache.

    The demo has no SDSS counterpart, so the ``photometry`` asset cross-matches this file instead of
    querying SkyServer (:func:`features.sources.synthetic.write_photometry_catalogue`). The file is
    written under a temporary name and renamed, so two processes writing it at once never leave half a
    file.
    """
    from features.sources.synthetic import write_photometry_catalogue

    demo_dir = wh.cache_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    catalogue = demo_dir / f"sdss_like_n{len(survey)}_seed{survey.seed}.parquet"
    if not catalogue.exists():
        part = catalogue.with_name(f".{catalogue.stem}.{os.getpid()}.parquet")
        write_photometry_catalogue(survey, part)
        os.replace(part, catalogue)
    return catalogue


@dataclass(frozen=True)
class ShardPhotometry(StageResult):
    """What :func:`match_shard` wrote for one shard (the ``photometry`` asset's metadata).

    Rates are ``None`` for an empty shard; ``colour_in_range`` is, per colour, the fraction of finite
    colours among ``quality_ok`` rows inside :data:`features.photometry.COLOUR_RANGES` (``None``: none).
    ``sdss`` is the SkyServer client's accounting (``None`` when a catalogue file was matched).
    """

    source: str
    n_galaxies: int
    n_matched: int
    match_rate: float | None
    n_quality_ok: int
    quality_pass_rate: float | None
    median_g_r: float | None
    flag_counts: dict[str, int] = field(default_factory=dict)
    """Rows carrying each ``PHOT_*`` flag, by lower-case flag name."""
    colour_in_range: dict[str, float | None] = field(default_factory=dict)
    colour_medians: dict[str, float | None] = field(default_factory=dict)
    absent_columns: str = "none"
    photometry_absent: str = "no"
    """Why photometry could not be had (offline, no positions), or ``"no"``: the ``available`` WARN check."""
    position_unknown: int = 0
    """Galaxies of the shard without a sky position (``POSITION_UNKNOWN``): never cross-matched."""
    colour_ranges: str = ""
    sdss: dict[str, Any] | None = None
    sdss_failures: str | None = None

    @property
    def worst_colour_in_range(self) -> float:
        """The lowest ``colour_in_range`` over the colours (NaN when no colour could be judged)."""
        values = [v for v in self.colour_in_range.values() if v is not None and not math.isnan(v)]
        return min(values) if values else float("nan")

    @classmethod
    def of(cls, summary: dict[str, Any], *, absent: str | None = None, position_unknown: int = 0) -> ShardPhotometry:
        """From :func:`features.photometry.pipeline.summarize`'s dict (plus ``source``, ``absent_columns``
        and, after SDSS, ``fetch``)."""
        from features.photometry import COLOUR_RANGES

        def num(v: Any) -> float | None:
            return None if isinstance(v, float) and math.isnan(v) else v

        fetch = summary.get("fetch")
        if absent is not None:  # nothing was matched because nothing could be: `available` says so
            summary = {**summary, "match_rate": float("nan"), "quality_pass_rate": float("nan")}
        return cls(
            source=str(summary["source"]),
            n_galaxies=int(summary["n_galaxies"]),
            n_matched=int(summary["n_matched"]),
            match_rate=num(summary["match_rate"]),
            n_quality_ok=int(summary["n_quality_ok"]),
            quality_pass_rate=num(summary["quality_pass_rate"]),
            median_g_r=num(summary.get("median_g_r", float("nan"))),
            flag_counts={k.removeprefix("n_"): int(v) for k, v in summary.items() if k.startswith("n_phot_")},
            colour_in_range={k.removeprefix("colour_in_range_"): num(v) for k, v in summary.items()
                             if k.startswith("colour_in_range_")},
            colour_medians={k.removeprefix("median_"): num(v) for k, v in summary.items() if k.startswith("median_")},
            absent_columns=", ".join(summary.get("absent_columns") or []) or "none",
            photometry_absent=absent or "no",
            position_unknown=position_unknown,
            colour_ranges=json.dumps(COLOUR_RANGES),
            sdss=None if fetch is None else {k: v for k, v in fetch.items() if k != "failures"},
            sdss_failures=None if fetch is None else "; ".join(fetch["failures"]) or "none",
        )


def match_shard(wh: Warehouse, shard: str, *, catalog: str = "", column_map_json: str = "",
                radius_arcsec: float = 1.5, search_radius_arcsec: float = 3.0, mag_err_max: float = 0.2,
                batch_size: int = 25, requests_per_second: float = 1.0, max_retries: int = 4,
                sdss_base_url: str = "", require: bool = False, run_id: str | None = None,
                log: Callable[[str], None] | None = None) -> ShardPhotometry:
    """Cross-match the shard's galaxies, apply quality cuts, upsert one ``photometry`` row per galaxy.

    The catalogue is ``catalog``, else the source's own (:func:`catalogue_for_source`), else SDSS DR17
    through astroquery, caching raw responses in ``<warehouse>/cache/sdss`` (offline, that path fails
    within seconds). The options are those of the ``photometry`` asset's run config.

    Photometry that cannot be had is a flagged absence, not a failure: offline (SkyServer unreachable)
    every galaxy gets a NaN row with ``PHOT_QUERY_FAILED`` (asked again next run); a galaxy without a
    position gets one with ``POSITION_UNKNOWN`` and is never asked for. The result's ``photometry_absent``
    says why (``log`` hears it too); ``require`` makes it an error instead.

    Raises
    ------
    features.errors.InputError
        The shard has no galaxies, a named catalogue is missing, ``column_map_json`` is not JSON, or
        ``require`` and no galaxy has a position.
    features.errors.OfflineError
        ``require`` and SDSS is unreachable.
    """
    from features.photometry import (  # astropy: imported when a shard is matched
        MatchConfig,
        QualityConfig,
        SDSSConfig,
        SkyServerClient,
        photometry_absent,
        photometry_from_catalogue,
        photometry_from_sdss,
        read_catalogue,
    )

    gal = wh.read("galaxies", columns=["galaxy_id", "source", "ra", "dec", "redshift"], where=f"shard = {quote(shard)}")
    if gal.num_rows == 0:
        raise InputError(f"shard {shard!r} has no galaxies; materialize `galaxies` first")
    gal = gal.sort_by("galaxy_id")
    ids = gal.column("galaxy_id").to_pylist()
    ra, dec, z = (np.asarray(gal.column(c).to_numpy(zero_copy_only=False), float) for c in ("ra", "dec", "redshift"))
    source = gal.column("source")[0].as_py()
    match = MatchConfig(radius_arcsec=radius_arcsec, search_radius_arcsec=search_radius_arcsec)
    quality = QualityConfig(mag_err_max=mag_err_max)

    path = catalogue_for_source(wh, source, catalog)
    absent: str | None = None
    known = np.isfinite(ra) & np.isfinite(dec)
    if not known.any():
        absent = f"no galaxy of shard {shard} has a sky position (POSITION_UNKNOWN): nothing to cross-match"
        if require:
            raise InputError(f"photometry required but absent: {absent}")
    if path is not None:
        try:
            mapping = json.loads(column_map_json) if column_map_json else None
        except json.JSONDecodeError as exc:
            raise InputError(f"column map is not JSON: {exc}") from None
        result = photometry_from_catalogue(ids, ra, dec, z, catalogue=read_catalogue(path, mapping), shard=shard,
                                           match=match, quality=quality)
    else:
        client = SkyServerClient(
            wh.cache_dir / "sdss",
            SDSSConfig(batch_size=batch_size, search_radius_arcsec=search_radius_arcsec,
                       min_interval_s=1.0 / requests_per_second if requests_per_second > 0 else 0.0,
                       max_retries=max_retries, base_url=sdss_base_url),
        )
        try:
            result = photometry_from_sdss(ids, ra, dec, z, client=client, shard=shard, match=match, quality=quality)
        except OfflineError as exc:
            if require:
                raise
            absent = ("SDSS SkyServer is unreachable (offline?): cross-match a catalogue file instead "
                      "(--photometry-catalog FILE)")
            if log is not None:
                log(str(exc))
            result = photometry_absent(ids, ra, dec, z, service=client.config.service_name, shard=shard,
                                       quality=quality)
    wh.upsert("photometry", result.table, run_id=run_id)
    if absent is not None and log is not None:
        log(f"photometry absent for shard {shard}: {absent}")
    return ShardPhotometry.of(result.summary, absent=absent, position_unknown=int((~known).sum()))
