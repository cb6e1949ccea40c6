"""Ingest assets: ``galaxies`` (per shard, images stored alongside) and ``duplicate_groups``."""


import time
from collections import Counter

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dagster_project.defs.ingest.records import iter_shard_rows
from dagster_project.partitions import SHARDS
from dagster_project.resources import WarehouseResource
from features.flags import Flag
from features.sources.sky import row_runs
from stages.progress import Progress
from stages.sources import shard_rows
from warehouse import quote, schemas

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
    wh = warehouse.open()
    shard = context.partition_key
    source, rows = shard_rows(wh, shard)  # a row range, or a HEALPix pixel's rows
    runs = row_runs(rows)
    t0 = time.perf_counter()
    # Decode and encode the whole shard before writing anything, so an unreadable image leaves every
    # table as it was; only the encoded bytes are held (~140 KB a galaxy). Then images first, chunk by
    # chunk (bounded Arrow buffers): a galaxies row always has its image.
    with Progress(len(rows), f"images {shard}", log=context.log.info) as progress:
        parts = list(iter_shard_rows(source.iter_runs(runs), shard, total=len(rows), on_progress=progress.update))
    gal_parts: list[pa.Table] = []
    shapes: Counter = Counter()
    dtypes: Counter = Counter()
    image_bytes = 0
    while parts:
        part = parts.pop(0)
        wh.upsert("images", part.images_table(), run_id=context.run_id)
        gal_parts.append(part.galaxies_table())
        shapes.update(part.shapes)
        dtypes.update(part.dtypes)
        image_bytes += part.image_bytes
    elapsed = time.perf_counter() - t0
    gal = pa.concat_tables(gal_parts)
    n_rows = gal.num_rows
    if wh.exists("galaxies"):  # keep duplicate groups found earlier; duplicate_groups refreshes them
        old = wh.read("galaxies", columns=["galaxy_id", "duplicate_group"], where=f"shard = {quote(shard)}")
        groups = dict(zip(old.column("galaxy_id").to_pylist(), old.column("duplicate_group").to_pylist()))
        kept = [groups.get(g) for g in gal.column("galaxy_id").to_pylist()]
        gal = gal.set_column(gal.schema.get_field_index("duplicate_group"), "duplicate_group",
                             pa.array(kept, pa.string()))
    if hasattr(source, "truth_table"):
        wh.upsert("truth", pa.concat_tables([source.truth_table(a, b) for a, b in runs]), run_id=context.run_id)
    wh.upsert("galaxies", gal, run_id=context.run_id)

    stored = wh.read("galaxies", columns=["galaxy_id"], where=f"shard = {quote(shard)}")
    ids = stored.column("galaxy_id")
    n_unique = len(pc.unique(ids))
    flags = np.asarray(gal.column("flags").to_numpy(zero_copy_only=False), dtype=np.int64)
    n_blank = int(((flags & int(Flag.IMAGE_BLANK)) > 0).sum())
    n_nan = int(((flags & int(Flag.IMAGE_NAN)) > 0).sum())
    blank_rate = n_blank / max(n_rows, 1)
    checks = [
        dg.AssetCheckResult(check_name="unique_ids", passed=n_unique == len(ids),
                            metadata={"rows": len(ids), "unique": n_unique}),
        dg.AssetCheckResult(check_name="rows_per_shard", passed=len(ids) == len(rows),
                            metadata={"expected": len(rows), "stored": len(ids)}),
        dg.AssetCheckResult(check_name="image_shape_dtype", passed=len(shapes) == 1 and len(dtypes) == 1,
                            metadata={"shapes": dict(shapes), "dtypes": dict(dtypes)}),
        dg.AssetCheckResult(check_name="blank_images", passed=blank_rate <= BLANK_RATE_MAX,
                            metadata={"blank": n_blank, "rate": blank_rate, "threshold": BLANK_RATE_MAX}),
    ]
    return dg.MaterializeResult(
        metadata={
            "source": source.name,
            "source_kind": source.kind,
            "rows": dg.MetadataValue.int(n_rows),
            "row_range": ", ".join(f"[{a}, {b})" for a, b in runs[:8]) + (" ..." if len(runs) > 8 else ""),
            "image_bytes_per_galaxy": dg.MetadataValue.float(image_bytes / max(n_rows, 1)),
            "blank_images": n_blank,
            "nan_images": n_nan,
            "galaxies_per_second": dg.MetadataValue.float(n_rows / max(elapsed, 1e-9)),
            "table_versions": dg.MetadataValue.json(wh.versions()),
        },
        check_results=checks,
    )


@dg.asset(deps=[galaxies], group_name="ingest", kinds={"lance"})
def duplicate_groups(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Group identical images and positions within 2 arcsec across all shards (``galaxies.duplicate_group``).

    Splits keep each group on one side, so near-duplicates cannot leak test images into training.
    """
    from features.sources.duplicates import group_duplicates

    wh = warehouse.open()
    gal = wh.read("galaxies")
    groups = group_duplicates(
        gal.column("galaxy_id").to_pylist(),
        gal.column("ra").to_numpy(zero_copy_only=False).astype(float),
        gal.column("dec").to_numpy(zero_copy_only=False).astype(float),
        gal.column("image_sha1").to_pylist(),
    )
    old = gal.column("duplicate_group").to_pylist()
    flags = gal.column("flags").to_numpy(zero_copy_only=False).astype(np.int64)
    dup_bit = int(Flag.IMAGE_DUPLICATE)
    new_flags = np.where([g is not None for g in groups], flags | dup_bit, flags & ~dup_bit)
    changed = np.array([a != b for a, b in zip(old, groups)]) | (new_flags != flags)
    if changed.any():
        upd = gal.filter(pa.array(changed))
        upd = upd.set_column(upd.schema.get_field_index("duplicate_group"), "duplicate_group",
                             pa.array([g for g, c in zip(groups, changed) if c], pa.string()))
        upd = upd.set_column(upd.schema.get_field_index("flags"), "flags",
                             pa.array(new_flags[changed], pa.int64()))
        wh.upsert("galaxies", upd.drop_columns(list(schemas.PROVENANCE_COLUMNS)), run_id=context.run_id)
    members = [g for g in groups if g is not None]
    return dg.MaterializeResult(
        metadata={
            "galaxies": len(groups),
            "groups": len(set(members)),
            "galaxies_in_groups": len(members),
            "rows_changed": int(changed.sum()),
        }
    )


defs = dg.Definitions(assets=[galaxies, duplicate_groups])
