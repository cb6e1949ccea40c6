"""Assets of the embeddings stage.

- ``ssl_encoder`` (unpartitioned): self-supervised pretraining (SimCLR) of ``ssl_resnet18`` on every
  galaxy image of the warehouse (:mod:`stages.ssl`), so the embeddings learn from the survey itself when
  no DINOv2 weights are in place. With ``train="auto"`` (the default) it is skipped when the DINOv2
  ViT-S/14 weights resolve (they are used instead); its metadata names the start (scratch or
  continued from pretrained weights), the training set's table versions and the weights' SHA-256.
- ``embeddings`` (per shard): CLS and mean-patch vectors of every galaxy of the shard, written to the
  table of the configured encoder, ``embeddings_<encoder>``. With ``encoder="auto"`` (the default) that
  is an in-domain Zoobot encoder when its weights resolve, else ``dinov2_vits14`` when its weights resolve; otherwise ``ssl_resnet18`` (when ``ssl_encoder`` has
  trained it) and the named ``random_vits14`` baseline beside it, on a hash sample of about
  ``baseline_sample`` galaxies, each in its own table
  (:func:`stages.embeddings.auto_encoders`); the materialization metadata says which, and where the
  weights came from.
- ``embedding_index`` (unpartitioned): builds or rebuilds the ANN index of each embeddings table above
  a row threshold (when it has rows the index does not cover), else records that search is exact.
"""

import dagster as dg
from pydantic import Field

from dagster_project.metadata import as_metadata
from dagster_project.partitions import SHARDS
from dagster_project.resources import WarehouseResource
from features.embeddings import BASELINE_SAMPLE, DEFAULT_SSL_ENCODER, choose_default_encoder
from features.ssl.config import SSLConfig, ViewConfig
from models.config import TRAIN_BUDGETS
from stages.embedding_results import SSLEncoderResult, embed_shard_encoders, update_indexes
from stages.embeddings import NORM_MAX, NORM_MIN
from stages.results import Skipped
from warehouse import search as vsearch

__all__ = ["EmbeddingIndexConfig", "EmbeddingsConfig", "SSLEncoderConfig", "embedding_index", "embeddings",
           "ssl_encoder"]

_SSL = SSLConfig()


class SSLEncoderConfig(dg.Config):
    """Run configuration of the ``ssl_encoder`` asset: a fixed budget of ``epochs`` (no early stopping)."""

    encoder: str = Field(default=DEFAULT_SSL_ENCODER, description="the registered encoder to train")
    train: str = Field(default="auto", description="auto (skip when Zoobot or DINOv2 ViT-S/14 weights resolve) "
                       "or always")
    init: str = Field(default="auto", description="auto (continue from the backbone's pretrained weights when "
                      "they resolve, else scratch), scratch or pretrained")
    epochs: int = Field(default=_SSL.epochs, description="fixed budget: passes over the images")
    max_images: int = Field(default=TRAIN_BUDGETS["ssl_encoder"], description="budget: train on at most this many "
                            "galaxies, a seeded sample (0: all), so images seen <= max_images x epochs at any N")
    batch_size: int = Field(default=_SSL.batch_size, description="images per SimCLR step (2 views each)")
    lr: float = Field(default=_SSL.lr, description="peak AdamW learning rate, cosine decay")
    temperature: float = Field(default=_SSL.temperature, description="NT-Xent temperature")
    seed: int = Field(default=_SSL.seed, description="seeds the initialisation, batch order and views")
    allow_download: bool = Field(default=False, description="may download the pretrained start weights (the "
                                 "DINOv2 check of train='auto' follows the embeddings asset, which may)")
    force: bool = Field(default=False, description="retrain even when the stored weights are up to date")

RECALL_MIN = 0.95
"""The ``ann_recall`` check fails when the index's recall@10 against exact search is below this."""


class EmbeddingsConfig(dg.Config):
    """Run configuration of the ``embeddings`` asset (every field has a default)."""

    encoder: str = Field(
        default="auto",
        description="a registered encoder (dinov2_vits14, zoobot_convnext_nano, ssl_resnet18, random_vits14, ...), "
        "hf_hub:<owner>/<repo>, timm:<model>, or auto (an in-domain Zoobot encoder, else DINOv2 ViT-S/14, when "
        "its weights resolve; else ssl_resnet18 when trained here and the random_vits14 baseline)",
    )
    weights_path: str = Field(default="", description="local .safetensors/.pth weights in timm's layout")
    batch_size: int = Field(default=32, description="images per forward pass")
    allow_download: bool = Field(default=True, description="may download weights from the Hugging Face Hub")
    baseline_sample: int = Field(
        default=BASELINE_SAMPLE,
        description="with auto beside ssl_resnet18: random_vits14 embeds a hash sample of about this many "
        "galaxies, what its comparisons need (0: every galaxy)",
    )


class EmbeddingIndexConfig(dg.Config):
    """Run configuration of the ``embedding_index`` asset."""

    min_rows: int = Field(default=vsearch.INDEX_MIN_ROWS, description="build an ANN index from this many rows")
    encoder: str = Field(default="", description="one encoder's table; empty: every embeddings table")


@dg.asset(deps=["galaxies"], group_name="embeddings", kinds={"pytorch"})
def ssl_encoder(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                config: SSLEncoderConfig) -> dg.MaterializeResult:
    """SimCLR pretraining of ``ssl_resnet18`` on the warehouse's images: weights under the root, with SHA-256."""
    if config.train not in ("auto", "always"):
        raise ValueError(f"ssl_encoder: train must be auto or always, got {config.train!r}")
    if config.train == "auto":
        choice = choose_default_encoder()  # as the embeddings asset's default (downloads allowed) decides
        if not choice.is_random:
            reason = f"not trained: {choice} is used instead (train='always' trains it anyway)"
            context.log.info(reason)
            return dg.MaterializeResult(metadata=as_metadata(Skipped(reason=reason)))
    from stages.ssl import train_ssl_encoder  # torch: imported when the asset runs, not with the definitions

    wh = warehouse.open()
    ssl = SSLConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                    temperature=config.temperature, seed=config.seed, views=ViewConfig())
    out = train_ssl_encoder(wh, config.encoder, ssl, init=config.init, allow_download=config.allow_download,
                            force=config.force, max_images=config.max_images, log=context.log.info)
    return dg.MaterializeResult(metadata=as_metadata(SSLEncoderResult.of(out)))


@dg.asset(
    partitions_def=SHARDS,
    deps=["galaxies", ssl_encoder],
    group_name="embeddings",
    kinds={"pytorch", "lance"},
    check_specs=[
        dg.AssetCheckSpec("no_nan", asset="embeddings", description="no vector holds NaN or inf"),
        dg.AssetCheckSpec("norms_in_range", asset="embeddings",
                          description=f"CLS norms within [{NORM_MIN:g}, {NORM_MAX:g}]"),
        dg.AssetCheckSpec("one_vector_per_galaxy", asset="embeddings",
                          description="exactly one vector for every galaxy of the shard (at least its sample "
                          "for a sampled baseline)"),
    ],
)
def embeddings(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, config: EmbeddingsConfig
) -> dg.MaterializeResult:
    """DINOv2 CLS and mean-patch embeddings of the shard's galaxies, in ``embeddings_<encoder>``."""
    out = embed_shard_encoders(warehouse.open(), context.partition_key, encoder=config.encoder,
                               weights_path=config.weights_path, allow_download=config.allow_download,
                               batch_size=config.batch_size, baseline_sample=config.baseline_sample,
                               run_id=context.run_id, log=context.log.info)
    per = out.tables
    no_nan = all(m["nan_vectors"] == 0 for m in per.values())
    norms_ok = all(m["stored_rows"] == 0 or (NORM_MIN <= m["norm_min"] and m["norm_max"] <= NORM_MAX) for m in per.values())
    # a sampled baseline may hold more than its sample (drawn when the catalogue was smaller, or a full run)
    one_each = all(m["missing"] == 0 and (m["extra"] == 0 or m["sample"]) and m["stored_rows"] == m["unique_ids"]
                   for m in per.values())
    checks = [
        dg.AssetCheckResult(check_name="no_nan", passed=no_nan,
                            metadata={"nan_vectors": {t: m["nan_vectors"] for t, m in per.items()}, "threshold": 0}),
        dg.AssetCheckResult(
            check_name="norms_in_range", passed=norms_ok,
            metadata={"norm_min": min(m["norm_min"] for m in per.values()),
                      "norm_max": max(m["norm_max"] for m in per.values()),
                      "threshold_min": NORM_MIN, "threshold_max": NORM_MAX},
        ),
        dg.AssetCheckResult(
            check_name="one_vector_per_galaxy", passed=one_each,
            metadata={t: dg.MetadataValue.json({k: m[k] for k in ("rows", "shard_galaxies", "sample", "unique_ids",
                                                                  "missing", "extra")})
                      for t, m in per.items()},
        ),
    ]
    return dg.MaterializeResult(metadata=as_metadata(out), check_results=checks)


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
    out = update_indexes(warehouse.open(), encoder=config.encoder, min_rows=config.min_rows, log=context.log.info)
    worst = out.worst_recall
    return dg.MaterializeResult(
        metadata=as_metadata(out),
        check_results=[
            dg.AssetCheckResult(
                check_name="ann_recall", passed=worst is None or worst >= RECALL_MIN,
                metadata={"recall_at_10": worst if worst is not None else "exact search (no index)",
                          "threshold": RECALL_MIN},
            )
        ],
    )


defs = dg.Definitions(assets=[ssl_encoder, embeddings, embedding_index])
