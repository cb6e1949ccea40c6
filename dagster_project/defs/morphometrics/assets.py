"""The ``morphometrics`` asset: per shard, statmorph morphology of every galaxy in the configured bands.

Thin by design: :func:`stages.morphometrics.measure_shard` reads, measures and writes; this module holds
the run config and turns the stage's :class:`~stages.morphometrics.MorphometricsResult` into metadata
and checks with their thresholds.
"""

import dagster as dg
from pydantic import Field

from dagster_project.metadata import as_metadata
from dagster_project.partitions import SHARDS
from dagster_project.resources import WarehouseResource
from features.flags import decode
from stages.morphometrics import FAILED_BITS, MorphometricsResult, measure_shard

__all__ = ["MorphometricsConfig", "check_results", "defs", "morphometrics"]


class MorphometricsConfig(dg.Config):
    """Run configuration of the ``morphometrics`` asset (every field has a default)."""

    bands: list[str] = Field(default=["r"], description='bands to measure, as named in images.bands, or "luminance"')
    fit_sersic: bool = Field(default=True, description="fit the single Sersic profile (~30% of the time)")
    time_limit_s: float = Field(default=30.0, description="per galaxy and band; beyond it NaN + MORPH_TIMED_OUT")
    workers: int = Field(default=0, description="worker processes: 0 one per core, 1 in the step's own process")
    chunk_size: int = Field(default=256, description="images read from the warehouse at a time")
    max_failed_rate: float = Field(default=0.10, description="check: largest fraction of rows with no measurement")
    max_bad_rate: float = Field(default=0.50, description="check: largest fraction with statmorph flag >= 2")


def check_results(out: MorphometricsResult, max_failed_rate: float, max_bad_rate: float) -> list[dg.AssetCheckResult]:
    """The asset's four checks, thresholds in their metadata."""
    return [
        dg.AssetCheckResult(
            check_name="flag_rate", asset_key="morphometrics",
            passed=bool(out.failed_rate <= max_failed_rate and out.statmorph_bad_rate <= max_bad_rate),
            metadata={"failed_rate": out.failed_rate, "max_failed_rate": max_failed_rate,
                      "statmorph_bad_rate": out.statmorph_bad_rate, "max_bad_rate": max_bad_rate,
                      "failed_bits": ", ".join(decode(int(FAILED_BITS)))}),
        dg.AssetCheckResult(check_name="gini_in_unit_interval", asset_key="morphometrics",
                            passed=out.gini_violations == 0,
                            metadata={"violations": out.gini_violations, "range": "0 <= gini <= 1"}),
        dg.AssetCheckResult(check_name="m20_negative", asset_key="morphometrics", passed=out.m20_violations == 0,
                            metadata={"violations": out.m20_violations, "range": "m20 < 0"}),
        dg.AssetCheckResult(check_name="finite_when_unflagged", asset_key="morphometrics",
                            passed=out.nonfinite_values == 0,
                            metadata={"nonfinite_values": out.nonfinite_values, "threshold": 0,
                                      "rows_with_flags_0": out.rows_with_flags_0}),
    ]


@dg.asset(
    partitions_def=SHARDS,
    deps=["galaxies"],
    group_name="features",
    kinds={"lance"},
    check_specs=[
        dg.AssetCheckSpec("flag_rate", asset="morphometrics",
                          description="few rows without a measurement or with statmorph flag >= 2"),
        dg.AssetCheckSpec("gini_in_unit_interval", asset="morphometrics", description="0 <= gini <= 1"),
        dg.AssetCheckSpec("m20_negative", asset="morphometrics", description="m20 < 0"),
        dg.AssetCheckSpec("finite_when_unflagged", asset="morphometrics",
                          description="every quantity is finite where flags == 0 (Sersic: where flag_sersic == 0)"),
    ],
)
def morphometrics(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                  config: MorphometricsConfig) -> dg.MaterializeResult:
    """statmorph Gini, M20, CAS, MID, shape asymmetry and Sersic of every galaxy of the shard, per band."""
    out = measure_shard(warehouse.open(), context.partition_key, bands=list(config.bands),
                        fit_sersic=config.fit_sersic, time_limit_s=config.time_limit_s, workers=config.workers,
                        chunk_size=config.chunk_size, run_id=context.run_id,
                        log=context.log.info)
    return dg.MaterializeResult(metadata=as_metadata(out),
                                check_results=check_results(out, config.max_failed_rate, config.max_bad_rate))


defs = dg.Definitions(assets=[morphometrics])
