"""Routes of people's labels, anomaly scores, rankings and "more like these" (included by the app).

- ``POST /galaxies/{id}/labels``: append one label (``source`` ``api`` or ``page``); 404 for an unknown
  galaxy, 400 for a bad name or value; nothing is written then. Off loopback the token guards it like
  every other API path (:class:`service.http.guard.RequestGuard`).
- ``GET /anomalies``: the most anomalous galaxies of one encoder and method (the ``anomalies`` view).
- ``GET /rankings/{label}``: the stored ranking in acquisition order (the page's strange-galaxies view);
  without one yet, the anomaly order, said in ``ranked: false``.
- ``POST /rankings/{label}``: retrain the ranking on the newest labels (:func:`stages.ranking.rank`, the
  function the ``rankings`` asset calls) and answer the new order.
- ``POST /more-like``: several positives (and negatives) as one query.

Writes go to the app's warehouse (labels are appended, rankings replaced per label in one commit);
reads go through the request's snapshot, so an answer names the versions it read. (No ``from __future__ import
annotations``: FastAPI resolves the routes' local ``Annotated`` dependencies at definition time.)
"""


import threading
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from warehouse import Snapshot, Warehouse, quote

__all__ = ["LabelRequest", "LabelResponse", "MoreLikeRequest", "RankRequest", "RankedGalaxy", "RankingResponse",
           "labels_router"]


class LabelRequest(BaseModel):
    name: str = Field(min_length=1, max_length=64, description="the label, e.g. interesting, artefact, a class")
    value: float = Field(1.0, description="1 = yes, 0 = not; grades between")
    who: str = Field("anonymous", min_length=1, max_length=64, description="who labels")
    source: Literal["api", "page"] = "api"


class LabelResponse(BaseModel):
    label_id: str
    galaxy_id: str
    name: str
    value: float
    who: str
    labels: int = Field(description="rows of the labels table after this one")


class RankedGalaxy(BaseModel):
    position: int
    galaxy_id: str
    score: float
    prediction: float | None = None
    uncertainty: float | None = None
    anomaly_rank: float | None = None
    label_name: str | None = None


class RankingResponse(BaseModel):
    label: str
    ranked: bool = Field(description="false: no ranking trained yet, the anomaly order is shown")
    galaxies: list[RankedGalaxy]
    n_labels: int = 0
    note: str = ""
    versions: dict[str, int] = Field(default_factory=dict)


class RankRequest(BaseModel):
    who: str | None = Field(None, max_length=64, description="only this person's labels; default everyone's")
    encoder: str | None = Field(None, max_length=100)
    method: Literal["iforest", "knn"] = "knn"
    model: Literal["gp", "rfc", "rf"] = "gp"
    limit: int = Field(24, ge=1, le=500)


class MoreLikeRequest(BaseModel):
    positives: list[str] = Field(min_length=1, max_length=100)
    negatives: list[str] = Field(default_factory=list, max_length=100)
    k: int = Field(10, ge=1, le=500)
    encoder: str | None = Field(None, max_length=100)
    where: str | None = Field(None, max_length=2000)


def _floats(row: dict[str, Any]) -> dict[str, Any]:
    import math

    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def labels_router(base: Warehouse, snapshot: Callable[..., Snapshot]) -> APIRouter:
    """The router, over the app's warehouse ``base`` (writes) and its per-request ``snapshot`` dependency (reads)."""
    router = APIRouter(tags=["labels"])
    Snap = Annotated[Snapshot, Depends(snapshot)]
    rank_lock = threading.Lock()  # one retraining at a time per server: they would replace the same rows

    @router.post("/galaxies/{galaxy_id}/labels", response_model=LabelResponse, status_code=201)
    def add_label(galaxy_id: str, body: LabelRequest) -> LabelResponse:
        """Append a label of one galaxy (the catalogue's own label is never changed)."""
        from stages.labels import LabelIn, add_labels

        if not base.has_ids("galaxies", [galaxy_id]):
            raise HTTPException(404, f"no galaxy {galaxy_id!r}")
        (label_id,) = add_labels(base, [LabelIn(galaxy_id, body.name, body.value, body.who)], body.source)
        return LabelResponse(label_id=label_id, galaxy_id=galaxy_id, name=body.name, value=body.value,
                             who=body.who, labels=base.count("labels"))

    @router.get("/anomalies", response_model=RankingResponse)
    def anomalies(wh: Snap, encoder: Annotated[str | None, Query(max_length=100)] = None,
                  method: Literal["iforest", "knn"] = "knn",
                  limit: Annotated[int, Query(ge=1, le=500)] = 24) -> RankingResponse:
        """The most anomalous galaxies (rank 1 first)."""
        from stages.anomaly import top_anomalies

        t = top_anomalies(wh, encoder, method, limit).to_pylist()
        rows = [RankedGalaxy(position=i + 1, galaxy_id=r["galaxy_id"], score=r["anomaly_rank"],
                             anomaly_rank=r["anomaly_rank"], label_name=r["label_name"]) for i, r in enumerate(t)]
        return RankingResponse(label=f"anomaly:{method}", ranked=False, galaxies=rows, versions=wh.pins)

    def _ranking(wh: Snapshot, label: str, who: str | None, encoder: str | None, limit: int,
                 note: str = "") -> RankingResponse:
        from stages.ranking import ANYONE, ranked

        has = wh.exists("rankings") and wh.count(
            "rankings", where=f"label = {quote(label)} AND who = {quote(who or ANYONE)}") > 0
        if not has:
            out = anomalies(wh, encoder, "knn", limit)
            return out.model_copy(update={"label": label, "note": "no ranking yet: label some galaxies and re-rank"})
        t = ranked(wh, label, who=who, encoder=encoder, limit=limit).to_pylist()
        n = wh.sql_result(f"SELECT max(n_labels) AS n FROM rankings WHERE label = {quote(label)}",
                          limit=None).table.column("n")[0].as_py() or 0
        return RankingResponse(label=label, ranked=True, galaxies=[RankedGalaxy(**_floats(r)) for r in t],
                               n_labels=n, note=note, versions=wh.pins)

    @router.get("/rankings/{label}", response_model=RankingResponse)
    def get_ranking(label: str, wh: Snap, who: Annotated[str | None, Query(max_length=64)] = None,
                    encoder: Annotated[str | None, Query(max_length=100)] = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 24) -> RankingResponse:
        """The stored ranking of ``label`` in acquisition order (labelled galaxies left out)."""
        return _ranking(wh, label, who, encoder, limit)

    @router.post("/rankings/{label}", response_model=RankingResponse)
    def rerank(label: str, body: RankRequest, request_snapshot: Snap) -> RankingResponse:
        """Retrain the ranking of ``label`` on the newest labels and answer the new order."""
        from models.ranking import RankingParams
        from stages.ranking import rank

        with rank_lock:
            out = rank(base, label, who=body.who, encoder=body.encoder, method=body.method,
                       params=RankingParams(model=body.model))
        fresh = request_snapshot.session.snapshot()  # the versions the retraining just wrote
        return _ranking(fresh, label, body.who, out.encoder, body.limit, out.note)

    @router.post("/more-like", response_model=RankingResponse)
    def more_like(body: MoreLikeRequest, wh: Snap) -> RankingResponse:
        """Galaxies like all the positives and unlike the negatives (cosine to the Rocchio vector)."""
        from stages.ranking import more_like_these

        t = more_like_these(wh, body.positives, body.negatives, k=body.k, encoder=body.encoder,
                            where=body.where).to_pylist()
        rows = [RankedGalaxy(position=r["rank"], galaxy_id=r["galaxy_id"], score=1.0 - r["distance"],
                             label_name=r.get("label_name")) for r in t]
        return RankingResponse(label="more-like", ranked=True, galaxies=rows, versions=wh.pins)

    return router
