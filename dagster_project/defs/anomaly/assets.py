"""Assets of anomaly scores (group ``embeddings``) and rankings (group ``anomaly``).

- ``anomaly_scores`` (unpartitioned, after ``embedding_index``, so recomputed whenever the embeddings
  change): isolation forest and k-th neighbour distance per galaxy and encoder, as ranks in [0, 1]
  (:func:`stages.anomaly.score_anomalies`).
- ``rankings`` (unpartitioned): the active-learning ranking of one label, retrained on the newest labels
  (:func:`stages.ranking.rank`); with no labels of that name it is skipped, saying so (the demo runs it
  before anyone has labelled anything). ``astrovision rank --label NAME`` runs it with its config.
"""

import dagster as dg
from pydantic import Field

from dagster_project.metadata import as_metadata
from dagster_project.resources import WarehouseResource
from stages.results import Skipped

__all__ = ["AnomalyConfig", "RankingConfig", "anomaly_scores", "rankings"]


class AnomalyConfig(dg.Config):
    """Run configuration of the ``anomaly_scores`` asset."""

    encoders: list[str] = Field(default=[], description="encoders to score; empty: every embeddings table")
    methods: list[str] = Field(default=["iforest", "knn"], description="iforest, knn")
    k: int = Field(default=10, description="the neighbour whose distance is the knn score")
    n_components: int = Field(default=32, description="principal components of the normalised vectors (0: none)")
    n_estimators: int = Field(default=200, description="isolation forest trees")
    max_reference: int = Field(default=10_000, description="knn reference set; a seeded sample above it")
    with_morphometrics: bool = Field(default=False, description="append trusted morphometrics to the vectors")
    seed: int = Field(default=0, description="seeds the forest, the PCA and the reference sample")


class RankingConfig(dg.Config):
    """Run configuration of the ``rankings`` asset."""

    label: str = Field(default="interesting", description="the label name to learn")
    who: str = Field(default="", description="only this person's labels; empty: everyone's (newest wins)")
    encoder: str = Field(default="", description="embeddings to learn on; empty: the preferred table")
    method: str = Field(default="knn", description="the anomaly method combined with the prediction")
    model: str = Field(default="gp", description="gp (Gaussian process), rfc (random-forest classifier, balanced "
                       "classes) or rf (random forest regressor, Astronomaly)")
    anomaly_weight: float = Field(default=0.2, description="weight of the anomaly rank in the score")
    explore_every: int = Field(default=5, description="every n-th shown galaxy is the most uncertain (0: never)")
    seed: int = Field(default=0, description="seeds the model")


@dg.asset(deps=["embedding_index"], group_name="embeddings", kinds={"sklearn", "lance"})
def anomaly_scores(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                   config: AnomalyConfig) -> dg.MaterializeResult:
    """Anomaly score and rank in [0, 1] of every galaxy per encoder and method, with the embeddings version."""
    from features.anomaly import AnomalyParams
    from stages.anomaly import score_anomalies

    params = AnomalyParams(k=config.k, n_components=config.n_components, n_estimators=config.n_estimators,
                           max_reference=config.max_reference, seed=config.seed)
    out = score_anomalies(warehouse.open(), config.encoders or None, config.methods, params,
                          with_morphometrics=config.with_morphometrics, run_id=context.run_id, log=context.log.info)
    return dg.MaterializeResult(metadata=as_metadata(out))


@dg.asset(deps=[anomaly_scores], group_name="anomaly", kinds={"sklearn", "lance"})
def rankings(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
             config: RankingConfig) -> dg.MaterializeResult:
    """The active-learning ranking of ``label``: score, uncertainty and acquisition order of every galaxy."""
    from models.ranking import RankingParams
    from stages.labels import latest_labels
    from stages.ranking import rank

    wh = warehouse.open()
    if not latest_labels(wh, config.label, config.who or None):
        reason = f"no labels named {config.label!r}{f' by {config.who}' if config.who else ''} yet"
        context.log.info(reason)
        return dg.MaterializeResult(metadata=as_metadata(Skipped(reason=reason)))
    params = RankingParams(model=config.model, anomaly_weight=config.anomaly_weight,
                           explore_every=config.explore_every, seed=config.seed)
    out = rank(wh, config.label, who=config.who or None, encoder=config.encoder or None, method=config.method,
               params=params, run_id=context.run_id)
    return dg.MaterializeResult(metadata=as_metadata(out))


defs = dg.Definitions(assets=[anomaly_scores, rankings])
