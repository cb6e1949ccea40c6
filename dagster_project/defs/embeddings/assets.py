"""Assets of the embeddings stage.

- ``embeddings`` (per shard): CLS and mean-patch vectors of every galaxy of the shard, written to the
  table of the configured encoder, ``embeddings_<encoder>``. With ``encoder="auto"`` (the default) that
  is ``dinov2_vits14`` when its weights resolve and the named ``random_vits14`` baseline otherwise; the
  materialization metadata says which, and where the weights came from.
- ``embedding_index`` (unpartitioned): builds or rebuilds the ANN index of each embeddings table above
  a row threshold (when it has rows the index does not cover), else records that search is exact.
"""

import dagster as dg
from pydantic import Field

from dagster_project.partitions import SHARDS
from dagster_project.resources import WarehouseResource
from stages.embeddings import NORM_MAX, NORM_MIN, embed_shard, get_encoder, vector_stats
from warehouse import quote
from warehouse import search as vsearch

__all__ = ["EmbeddingIndexConfig", "EmbeddingsConfig", "embedding_index", "embeddings"]

RECALL_MIN = 0.95
"""The ``ann_recall`` check fails when the index's recall@10 against exact search is below this."""


class EmbeddingsConfig(dg.Config):
    """Run configuration of the ``embeddings`` asset (every field has a default)."""

    encoder: str = Field(
        default="auto",
        description="dinov2_vits14, dinov2_vitb14, random_vits14, or auto (DINOv2 ViT-S/14 when its "
        "weights resolve, else the named random baseline)",
    )
    weights_path: str = Field(default="", description="local .safetensors/.pth weights in timm's layout")
    batch_size: int = Field(default=32, description="images per forward pass")
    allow_download: bool = Field(default=True, description="may download weights from the Hugging Face Hub")


class EmbeddingIndexConfig(dg.Config):
    """Run configuration of the ``embedding_index`` asset."""

    min_rows: int = Field(default=vsearch.INDEX_MIN_ROWS, description="build an ANN index from this many rows")
    encoder: str = Field(default="", description="one encoder's table; empty: every embeddings table")


@dg.asset(
    partitions_def=SHARDS,
    deps=["galaxies"],
    group_name="embeddings",
    kinds={"pytorch", "lance"},
    check_specs=[
        dg.AssetCheckSpec("no_nan", asset="embeddings", description="no vector holds NaN or inf"),
        dg.AssetCheckSpec("norms_in_range", asset="embeddings",
                          description=f"CLS norms within [{NORM_MIN:g}, {NORM_MAX:g}]"),
        dg.AssetCheckSpec("one_vector_per_galaxy", asset="embeddings",
                          description="exactly one vector for every galaxy of the shard"),
    ],
)
def embeddings(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, config: EmbeddingsConfig
) -> dg.MaterializeResult:
    """DINOv2 CLS and mean-patch embeddings of the shard's galaxies, in ``embeddings_<encoder>``."""
    wh = warehouse.open()
    shard = context.partition_key
    enc, note = get_encoder(config.encoder, config.weights_path, config.allow_download)
    context.log.info(note)
    result = embed_shard(wh, shard, enc, batch_size=config.batch_size, run_id=context.run_id)
    stats = vector_stats(wh, result.table, shard)
    expected = set(result.galaxy_ids)
    stored = set(wh.read(result.table, columns=["galaxy_id"], where=f"shard = {quote(shard)}")
                 .column("galaxy_id").to_pylist())
    checks = [
        dg.AssetCheckResult(check_name="no_nan", passed=stats["nan_vectors"] == 0,
                            metadata={"nan_vectors": stats["nan_vectors"], "threshold": 0}),
        dg.AssetCheckResult(
            check_name="norms_in_range",
            passed=stats["rows"] == 0 or (NORM_MIN <= stats["norm_min"] and stats["norm_max"] <= NORM_MAX),
            metadata={"norm_min": stats["norm_min"], "norm_max": stats["norm_max"],
                      "threshold_min": NORM_MIN, "threshold_max": NORM_MAX},
        ),
        dg.AssetCheckResult(
            check_name="one_vector_per_galaxy",
            passed=stored == expected and stats["rows"] == stats["unique_ids"] == len(expected),
            metadata={"galaxies": len(expected), "vectors": stats["rows"], "unique_ids": stats["unique_ids"],
                      "missing": len(expected - stored), "extra": len(stored - expected)},
        ),
    ]
    return dg.MaterializeResult(
        metadata={
            "table": result.table,
            "encoder": enc.name,
            "random_weights": enc.weights_origin.is_random,
            "weights_origin": enc.weights_origin.value,
            "weights_sha256": enc.weights_sha256,
            "encoder_note": note,
            "rows": dg.MetadataValue.int(result.rows),
            "dim": enc.dim,
            "flagged_images": result.flagged,
            "galaxies_per_second": dg.MetadataValue.float(result.rows / max(result.seconds, 1e-9)),
        },
        check_results=checks,
    )


@dg.asset(
    deps=[embeddings],
    group_name="embeddings",
    kinds={"lance"},
    check_specs=[
        dg.AssetCheckSpec("ann_recall", asset="embedding_index",
                          description=f"recall@10 of the ANN index against exact search >= {RECALL_MIN}"),
    ],
)
def embedding_index(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, config: EmbeddingIndexConfig
) -> dg.MaterializeResult:
    """The ANN vector index of each embeddings table above ``min_rows`` (else: exact search).

    Built once the table reaches ``min_rows``; after that, rows embedded since are added to its cells
    (:func:`warehouse.search.update_index`), and it is retrained once they are half the table.
    """
    wh = warehouse.open()
    tables = [vsearch.pick_table(wh, config.encoder)] if config.encoder else vsearch.embedding_tables(wh)
    summary: dict[str, dict] = {}
    recalls: dict[str, float] = {}
    for table in tables:
        encoder = table.removeprefix("embeddings_")
        report = vsearch.update_index(wh, encoder, min_rows=config.min_rows)  # appended rows join the cells
        entry = {"search": report.search, "action": report.action or "none", "reason": report.reason,
                 "rows": report.rows, "unindexed_before": report.unindexed_before,
                 "build_s": round(report.build_s, 2), "index_bytes": report.index_bytes,
                 "params": report.params.as_dict() if report.params else None}
        if entry["search"] == "ann":
            recalls[table] = vsearch.recall_at_k(wh, encoder)
            entry["recall_at_10"] = recalls[table]
        summary[table] = entry
        context.log.info(f"{table}: {entry}")
    worst = min(recalls.values()) if recalls else None
    return dg.MaterializeResult(
        metadata={"tables": dg.MetadataValue.json(summary), "min_rows": config.min_rows,
                  "nprobes": vsearch.DEFAULT_NPROBES, "refine_factor": vsearch.DEFAULT_REFINE_FACTOR},
        check_results=[
            dg.AssetCheckResult(
                check_name="ann_recall", passed=worst is None or worst >= RECALL_MIN,
                metadata={"recall_at_10": worst if worst is not None else "exact search (no index)",
                          "threshold": RECALL_MIN},
            )
        ],
    )


defs = dg.Definitions(assets=[embeddings, embedding_index])
