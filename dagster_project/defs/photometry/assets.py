"""The ``photometry`` asset: per shard, SDSS-like photometry of every galaxy (catalogue file or SDSS).

Thin: :func:`stages.photometry.match_shard` reads, matches and writes; this module holds the run config
and the checks (thresholds in their metadata).

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


import math

import dagster as dg
from pydantic import Field

from dagster_project.metadata import as_metadata
from dagster_project.partitions import SHARDS
from dagster_project.resources import WarehouseResource
from stages.photometry import match_shard

# features.photometry imports astropy (coordinates, units): stages.photometry imports it when a shard is
# matched, so loading the Dagster definitions does not pay for it.

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
    out = match_shard(warehouse.open(), context.partition_key, catalog=config.catalog,
                      column_map_json=config.column_map_json, radius_arcsec=config.radius_arcsec,
                      search_radius_arcsec=config.search_radius_arcsec, mag_err_max=config.mag_err_max,
                      batch_size=config.batch_size, requests_per_second=config.requests_per_second,
                      max_retries=config.max_retries, sdss_base_url=config.sdss_base_url, require=config.require,
                      run_id=context.run_id, log=context.log.warning)
    nan = float("nan")
    return dg.MaterializeResult(
        metadata=as_metadata(out),
        check_results=[
            _check("match_rate", nan if out.match_rate is None else out.match_rate, config.min_match_rate,
                   "matched inside the radius / galaxies"),
            _check("quality_pass_rate", nan if out.quality_pass_rate is None else out.quality_pass_rate,
                   config.min_quality_pass_rate, "quality_ok / galaxies"),
            _check("colour_ranges", out.worst_colour_in_range, config.min_colour_in_range,
                   "lowest, over u-g g-r r-i i-z u-r, fraction of trusted colours inside COLOUR_RANGES"),
            dg.AssetCheckResult(check_name="available", asset_key="photometry", passed=out.photometry_absent == "no",
                                severity=dg.AssetCheckSeverity.WARN,
                                metadata={"reason": "photometry was cross-matched" if out.photometry_absent == "no"
                                          else out.photometry_absent,
                                          "position_unknown": out.position_unknown, "galaxies": out.n_galaxies}),
        ],
    )


defs = dg.Definitions(assets=[photometry])
