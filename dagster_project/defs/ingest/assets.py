"""Ingest assets: ``galaxies`` (per shard, images stored alongside) and ``duplicate_groups``."""


import dagster as dg

from dagster_project.metadata import as_metadata
from dagster_project.partitions import SHARDS
from dagster_project.resources import WarehouseResource
from stages.ingest import find_duplicate_groups, ingest_shard

__all__ = ["duplicate_groups", "galaxies"]

BLANK_RATE_MAX = 0.05
"""The ``blank_images`` check fails when more than this fraction of a shard's images is blank."""


@dg.asset(
    partitions_def=SHARDS,
    group_name="ingest",
    kinds={"lance"},
    check_specs=[
        # blocking: a shard that lost or doubled rows fails its step (and the CLI's exit status)
        dg.AssetCheckSpec("unique_ids", asset="galaxies", description="every galaxy_id appears once",
                          blocking=True),
        dg.AssetCheckSpec("rows_per_shard", asset="galaxies", description="the shard holds all its rows",
                          blocking=True),
        dg.AssetCheckSpec("image_shape_dtype", asset="galaxies", description="one image shape and dtype per shard"),
        dg.AssetCheckSpec(
            "blank_images", asset="galaxies", description=f"at most {BLANK_RATE_MAX:.0%} blank images"
        ),
    ],
)
def galaxies(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """One row per galaxy of the shard in ``galaxies``, its image in ``images`` (and ``truth`` for the demo)."""
    out = ingest_shard(warehouse.open(), context.partition_key, run_id=context.run_id, log=context.log.info)
    blank_rate = out.blank_images / max(out.rows, 1)
    checks = [
        dg.AssetCheckResult(check_name="unique_ids", passed=out.unique_ids == out.stored_rows,
                            metadata={"rows": out.stored_rows, "unique": out.unique_ids}),
        dg.AssetCheckResult(check_name="rows_per_shard", passed=out.stored_rows == out.expected_rows,
                            metadata={"expected": out.expected_rows, "stored": out.stored_rows}),
        dg.AssetCheckResult(check_name="image_shape_dtype", passed=len(out.shapes) == 1 and len(out.dtypes) == 1,
                            metadata={"shapes": out.shapes, "dtypes": out.dtypes}),
        dg.AssetCheckResult(check_name="blank_images", passed=blank_rate <= BLANK_RATE_MAX,
                            metadata={"blank": out.blank_images, "rate": blank_rate, "threshold": BLANK_RATE_MAX}),
    ]
    return dg.MaterializeResult(metadata=as_metadata(out), check_results=checks)


@dg.asset(deps=[galaxies], group_name="ingest", kinds={"lance"})
def duplicate_groups(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Group identical images and positions within 2 arcsec across all shards (``galaxies.duplicate_group``).

    Splits keep each group on one side, so near-duplicates cannot leak test images into training.
    """
    return dg.MaterializeResult(metadata=as_metadata(find_duplicate_groups(warehouse.open(), run_id=context.run_id)))


defs = dg.Definitions(assets=[galaxies, duplicate_groups])
