"""The ``photometry`` asset: per shard, SDSS-like photometry of every galaxy (catalogue file or SDSS).

Where the catalogue comes from, in order: the run config's ``catalog``; the ``photometry_catalog``
key of the source's ``params_json`` in the ``sources`` table (the demo survey registers its synthetic
SDSS-like file this way); otherwise SDSS DR17 through astroquery, caching raw responses in
``<warehouse>/cache/sdss``.

Photometry that cannot be had is a flagged absence, not a failure: offline (SkyServer unreachable,
found within seconds) every galaxy gets a NaN row with ``PHOT_QUERY_FAILED`` (asked again next run);
a galaxy without a position gets one with ``POSITION_UNKNOWN`` and is never asked for. The WARN check
``available`` then fails with the reason (``photometry_absent`` in the metadata), and the run goes on.
``require`` (``astrovision ingest --require-photometry``, ``photometry match``) makes it a step failure.
"""


import json
import math

import dagster as dg
import numpy as np
from pydantic import Field

from dagster_project.partitions import SHARDS
from dagster_project.resources import WarehouseResource
from features.errors import InputError, OfflineError
from stages.photometry import catalogue_for_source
from warehouse import quote

# features.photometry imports astropy (coordinates, units): it is imported inside the asset body, so
# loading the Dagster definitions does not pay for it.

__all__ = ["PhotometryConfig", "defs", "photometry"]


class PhotometryConfig(dg.Config):
    """Run configuration of the ``photometry`` asset (every field has a default)."""

    catalog: str = Field(default="", description="Catalogue file (CSV/FITS/Parquet); overrides the source's own.")
    column_map_json: str = Field(default="", description='JSON {"file column": "canonical column"} for other names.')
    radius_arcsec: float = Field(default=1.5, description="Match radius: the nearest object inside it is the match.")
    search_radius_arcsec: float = Field(default=3.0, description="Nearest object beyond the radius and inside this: far match, flagged.")
    mag_err_max: float = Field(default=0.2, description="Largest accepted model magnitude error per band (mag).")
    batch_size: int = Field(default=25, description="SDSS positions per request.")
    requests_per_second: float = Field(default=1.0, description="Polite SDSS request rate.")
    max_retries: int = Field(default=4, description="Retries of one SDSS batch (timeouts, 429, 5xx).")
    sdss_base_url: str = Field(default="", description="SkyServer base URL; empty: astroquery's default.")
    min_match_rate: float = Field(default=0.5, description="Check: lowest acceptable fraction of galaxies matched.")
    min_quality_pass_rate: float = Field(default=0.3, description="Check: lowest acceptable fraction passing the quality cuts.")
    min_colour_in_range: float = Field(default=0.95, description="Check: lowest acceptable fraction of trusted colours in the plausible range.")
    require: bool = Field(default=False, description="Fail the step when photometry cannot be had (SDSS unreachable, "
                                                     "no positions) instead of storing a flagged absence.")


def _check(name: str, value: float, threshold: float, what: str) -> dg.AssetCheckResult:
    judged = not math.isnan(value)
    return dg.AssetCheckResult(
        check_name=name,
        asset_key="photometry",
        passed=bool(value >= threshold) if judged else True,
        metadata={"value": value if judged else None, "threshold": threshold, "what": what,
                  **({} if judged else {"note": "nothing to judge"})},
    )


@dg.asset(
    partitions_def=SHARDS,
    deps=["galaxies"],
    group_name="features",
    kinds={"lance"},
    check_specs=[
        dg.AssetCheckSpec("match_rate", asset="photometry", description="fraction of galaxies with a match inside the radius"),
        dg.AssetCheckSpec("quality_pass_rate", asset="photometry", description="fraction passing the quality cuts (clean galaxy, g-r finite)"),
        dg.AssetCheckSpec("colour_ranges", asset="photometry", description="trusted colours lie in plausible galaxy ranges"),
        dg.AssetCheckSpec("available", asset="photometry",
                          description="photometry could be had (WARN: absent offline or without positions)"),
    ],
)
def photometry(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, config: PhotometryConfig
) -> dg.MaterializeResult:
    """Cross-match the shard's galaxies, apply quality cuts, store one ``photometry`` row per galaxy."""
    from features.photometry import (
        COLOUR_RANGES,
        MatchConfig,
        QualityConfig,
        SDSSConfig,
        SkyServerClient,
        photometry_absent,
        photometry_from_catalogue,
        photometry_from_sdss,
        read_catalogue,
    )

    wh = warehouse.open()
    shard = context.partition_key
    gal = wh.read("galaxies", columns=["galaxy_id", "source", "ra", "dec", "redshift"], where=f"shard = {quote(shard)}")
    if gal.num_rows == 0:
        raise InputError(f"shard {shard!r} has no galaxies; materialize `galaxies` first")
    gal = gal.sort_by("galaxy_id")
    ids = gal.column("galaxy_id").to_pylist()
    ra, dec, z = (np.asarray(gal.column(c).to_numpy(zero_copy_only=False), float) for c in ("ra", "dec", "redshift"))
    source = gal.column("source")[0].as_py()
    match = MatchConfig(radius_arcsec=config.radius_arcsec, search_radius_arcsec=config.search_radius_arcsec)
    quality = QualityConfig(mag_err_max=config.mag_err_max)

    path = catalogue_for_source(wh, source, config.catalog)
    absent: str | None = None
    known = np.isfinite(ra) & np.isfinite(dec)
    if not known.any():
        absent = f"no galaxy of shard {shard} has a sky position (POSITION_UNKNOWN): nothing to cross-match"
        if config.require:
            raise InputError(f"photometry required but absent: {absent}")
    if path is not None:
        mapping = json.loads(config.column_map_json) if config.column_map_json else None
        result = photometry_from_catalogue(ids, ra, dec, z, catalogue=read_catalogue(path, mapping), shard=shard,
                                           match=match, quality=quality)
    else:
        client = SkyServerClient(
            wh.cache_dir / "sdss",
            SDSSConfig(batch_size=config.batch_size, search_radius_arcsec=config.search_radius_arcsec,
                       min_interval_s=1.0 / config.requests_per_second if config.requests_per_second > 0 else 0.0,
                       max_retries=config.max_retries, base_url=config.sdss_base_url),
        )
        try:
            result = photometry_from_sdss(ids, ra, dec, z, client=client, shard=shard, match=match, quality=quality)
        except OfflineError as exc:
            if config.require:
                raise
            absent = ("SDSS SkyServer is unreachable (offline?): cross-match a catalogue file instead "
                      "(--photometry-catalog FILE)")
            context.log.warning(str(exc))
            result = photometry_absent(ids, ra, dec, z, service=client.config.service_name, shard=shard,
                                       quality=quality)
    wh.upsert("photometry", result.table, run_id=context.run_id)
    if absent is not None:
        context.log.warning(f"photometry absent for shard {shard}: {absent}")

    s = result.summary
    in_range = [v for k, v in s.items() if k.startswith("colour_in_range_") and not math.isnan(v)]
    worst = min(in_range) if in_range else float("nan")
    if absent is not None:  # nothing was matched because nothing could be: the `available` check says so
        s = {**s, "match_rate": float("nan"), "quality_pass_rate": float("nan")}
    metadata = {k: v for k, v in s.items() if k != "fetch"}
    metadata["photometry_absent"] = absent or "no"
    metadata["absent_columns"] = ", ".join(s["absent_columns"]) or "none"
    metadata["colour_ranges"] = json.dumps(COLOUR_RANGES)
    if "fetch" in s:
        metadata.update({f"sdss_{k}": v for k, v in s["fetch"].items() if k != "failures"})
        metadata["sdss_failures"] = "; ".join(s["fetch"]["failures"]) or "none"
    return dg.MaterializeResult(
        metadata={k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metadata.items()},
        check_results=[
            _check("match_rate", s["match_rate"], config.min_match_rate, "matched inside the radius / galaxies"),
            _check("quality_pass_rate", s["quality_pass_rate"], config.min_quality_pass_rate, "quality_ok / galaxies"),
            _check("colour_ranges", worst, config.min_colour_in_range,
                   "lowest, over u-g g-r r-i i-z u-r, fraction of trusted colours inside COLOUR_RANGES"),
            dg.AssetCheckResult(check_name="available", asset_key="photometry", passed=absent is None,
                                severity=dg.AssetCheckSeverity.WARN,
                                metadata={"reason": absent or "photometry was cross-matched",
                                          "position_unknown": int((~known).sum()), "galaxies": len(ids)}),
        ],
    )


defs = dg.Definitions(assets=[photometry])
