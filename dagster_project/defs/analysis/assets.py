"""Assets of the analysis stage (group ``analysis``).

- ``embedding_maps`` (unpartitioned): PCA (axes and explained variance in ``embedding_pca``) and a
  seeded 2-D UMAP of every embeddings table, in ``embedding_maps`` keyed by (galaxy, encoder, method),
  with figures of the map by class, Gini and g-r.
- ``representation_analysis`` (unpartitioned): Spearman rho of the top PCs with morphometrics,
  photometry and (demo) truth, with bootstrap CIs, permutation p and BH q; grouped CV ridge R^2 of each
  quantity from every encoder against the pixel baseline; the heatmaps and R^2 bars.

Both name the weights every result came from (``weights_origin`` of each embeddings table).
"""

import dagster as dg
from pydantic import Field

from dagster_project.metadata import as_metadata
from dagster_project.resources import WarehouseResource
from stages.analysis_results import AnalysisResult, MapsResult

__all__ = ["AnalysisConfig", "MapsConfig", "embedding_maps", "representation_analysis"]


class MapsConfig(dg.Config):
    """Run configuration of the ``embedding_maps`` asset."""

    methods: list[str] = Field(default=["pca", "umap"], description="map methods: pca, umap")
    encoders: list[str] = Field(default=[], description="encoders to map; empty: every embeddings table")
    n_components: int = Field(default=10, description="principal components stored")
    seed: int = Field(default=0, description="UMAP seed")
    umap_neighbors: int = Field(default=15, description="UMAP n_neighbors")
    umap_max_fit: int = Field(default=100_000, description="fit UMAP on a seeded subsample of this many vectors "
                              "above it, the rest placed by transform")


class AnalysisConfig(dg.Config):
    """Run configuration of the ``representation_analysis`` asset."""

    encoders: list[str] = Field(default=[], description="encoders to analyse; empty: every embeddings table")
    n_pcs: int = Field(default=5, description="principal components correlated with each quantity")
    n_boot: int = Field(default=1000, description="bootstrap resamples for every interval")
    n_perm: int = Field(default=1000, description="permutations for every rho p-value")
    n_folds: int = Field(default=5, description="cross-validation folds (grouped by duplicate group)")
    seed: int = Field(default=0, description="seed of the resamples, permutations and folds")


@dg.asset(deps=["embeddings", "morphometrics", "photometry"], group_name="analysis", kinds={"lance"})
def embedding_maps(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                   config: MapsConfig) -> dg.MaterializeResult:
    """PCA and UMAP coordinates of every encoder's CLS vectors, per galaxy, with the weights named."""
    from stages.analysis import build_maps

    out = build_maps(warehouse.open(), encoders=config.encoders or None, methods=config.methods,
                     n_components=config.n_components, seed=config.seed, umap_neighbors=config.umap_neighbors,
                     umap_max_fit=config.umap_max_fit, run_id=context.run_id, log=context.log.info)
    return dg.MaterializeResult(metadata=as_metadata(MapsResult.of(out)))


@dg.asset(deps=[embedding_maps, "duplicate_groups"], group_name="analysis", kinds={"duckdb"})
def representation_analysis(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                            config: AnalysisConfig) -> dg.MaterializeResult:
    """What the embeddings encode: rho of PCs with physics (CIs, p, BH q) and grouped CV R^2 vs baselines."""
    from stages.analysis import analyse

    out = analyse(warehouse.open(), encoders=config.encoders or None, n_pcs=config.n_pcs, n_boot=config.n_boot,
                  n_perm=config.n_perm, n_folds=config.n_folds, seed=config.seed, run_id=context.run_id,
                  log=context.log.info)
    return dg.MaterializeResult(metadata=as_metadata(AnalysisResult.of(out)))


defs = dg.Definitions(assets=[embedding_maps, representation_analysis])
