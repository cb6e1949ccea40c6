"""Pydantic models of every request and response body (the OpenAPI schema is generated from them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "ErrorResponse",
    "GalaxyRecord",
    "HealthResponse",
    "Neighbour",
    "SQLRequest",
    "SQLResponse",
    "SearchPlanModel",
    "SimilarResponse",
    "TableInfo",
    "TablesResponse",
]

Versions = dict[str, int]


class ErrorResponse(BaseModel):
    """Every error: one line saying what is wrong with the request."""

    error: str = Field(description="one line, no traceback")


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    tables: int = Field(description="tables in the warehouse")
    code_version: str


class TableInfo(BaseModel):
    table: str
    rows: int
    version: int = Field(description="latest Lance version (pass it back as ?version=table:N to pin it)")
    description: str = ""


class TablesResponse(BaseModel):
    tables: list[TableInfo]


class Prediction(BaseModel):
    model_name: str
    model_version: int
    predicted_label: int
    predicted_name: str | None = None
    confidence: float | None = Field(None, description="largest class probability")
    probabilities: list[float | None]
    classes: list[str] = Field(description="class names in the order of probabilities")
    split: str | None = None
    label: int | None = None
    label_name: str | None = None
    correct: bool | None = None
    extra: dict[str, Any] = Field(default_factory=dict, description="further stored columns (e.g. a conformal set)")


class GalaxyRecord(BaseModel):
    galaxy_id: str
    catalogue: dict[str, Any] = Field(description="its row of the galaxies table")
    morphometrics: list[dict[str, Any]] = Field(description="one row per band")
    photometry: dict[str, Any] | None
    predictions: list[Prediction] = Field(description="newest gate-passing version of each model")
    embeddings: list[str] = Field(description="encoders holding a vector of it")
    flags: dict[str, list[str]] = Field(description="decoded flag names per table")
    versions: Versions = Field(description="the table versions this answer read")


class Neighbour(BaseModel):
    rank: int
    galaxy_id: str
    distance: float = Field(description="cosine distance, 1 - cos")
    features: dict[str, Any] = Field(default_factory=dict)


class SearchPlanModel(BaseModel):
    """How the search was served (:class:`warehouse.search.SearchPlan`)."""

    route: Literal["exact", "exact_subset", "ann", "ann_prefilter", "ann_postfilter"]
    rows: int = Field(description="rows in the embeddings table version searched")
    allowed: int | None = Field(None, description="rows the where allows")
    selectivity: float | None = Field(None, description="allowed / rows")
    candidates: int = Field(description="vectors whose exact distance was computed")
    indexed: bool
    unindexed_rows: int = Field(description="rows the ANN index does not cover yet (searched flat)")
    reason: str
    filter_ms: float
    search_ms: float
    filter_cached: bool = Field(False, description="the where's rows came from the cache (same table versions)")


class SimilarResponse(BaseModel):
    query: str = Field(description="the query galaxy id, or the uploaded file's name")
    encoder: str
    k: int
    where: str | None = None
    neighbours: list[Neighbour]
    plan: SearchPlanModel = Field(description="the route the planner took, and why")
    versions: Versions


class SQLRequest(BaseModel):
    query: str = Field(description="one read-only SELECT (WITH, DESCRIBE, EXPLAIN SELECT ...)", max_length=100_000)
    limit: int | None = Field(None, ge=0, description="row limit (default and maximum: the server's cap)")
    format: Literal["json", "arrow", "parquet"] = "json"
    versions: Versions = Field(default_factory=dict, description="table -> Lance version to read (time travel)")


class SQLResponse(BaseModel):
    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool = Field(description="the row limit cut the result")
    limit: int | None
    versions: Versions
