"""Anomaly stage: score every galaxy of each embeddings table, write ``anomaly_scores``.

Glue only (no Dagster, no argparse): read the stored vectors (and, optionally, the trusted
morphometrics of ``galaxy_features``), call :func:`features.anomaly.score_vectors`, and replace the
rows of each (encoder, method) in one commit, so a reader sees the old scores or the new ones. Each row
carries the embeddings table version it was computed from; the ``anomaly_scores`` asset (embeddings
group) calls :func:`score_anomalies`, and so does ``astrovision anomalies --compute``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from features.anomaly import METHODS, MIN_VECTORS, AnomalyParams, score_vectors
from features.errors import InputError
from stages.results import StageResult
from warehouse import Warehouse, quote
from warehouse.schemas.embeddings import TABLE_PREFIX, encoder_of_table

__all__ = ["MORPH_COLUMNS", "AnomalyResult", "EncoderVectors", "encoder_vectors", "score_anomalies", "top_anomalies"]

MORPH_COLUMNS: tuple[str, ...] = ("gini", "m20", "concentration", "asymmetry", "smoothness")
"""The morphometrics joined to the vectors with ``with_morphometrics`` (only where ``morph_ok``)."""

LogFn = Callable[[str], None]


@dataclass(frozen=True)
class EncoderVectors:
    """One embeddings table read whole: ids (sorted), vectors ``[n, d]`` and the table version."""

    encoder: str
    ids: list[str]
    x: np.ndarray
    version: int


def encoder_vectors(wh: Warehouse, encoder: str) -> EncoderVectors:
    """The vectors of ``embeddings_<encoder>`` at its current version (one-line error when absent or empty)."""
    table = TABLE_PREFIX + encoder
    if not wh.exists(table) or wh.count(table) == 0:
        have = sorted(encoder_of_table(t) or t for t in wh.tables() if t.startswith(TABLE_PREFIX))
        raise InputError(f"no embeddings stored for {encoder!r}; present: {', '.join(have) or 'none'}")
    ds = wh.dataset(table)
    rows = wh.read(table, columns=["galaxy_id", "vector"], version=ds.version).sort_by("galaxy_id")
    col = rows.column("vector").combine_chunks()
    x = np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(rows.num_rows, -1)
    return EncoderVectors(encoder, rows.column("galaxy_id").to_pylist(), x, ds.version)


def _morphometrics(wh: Warehouse, ids: list[str]) -> np.ndarray:
    cols = ", ".join(f"CASE WHEN morph_ok THEN {c} END AS {c}" for c in MORPH_COLUMNS)
    got = wh.sql_result(f"SELECT galaxy_id, {cols} FROM galaxy_features", limit=None).table
    by_id = {g: i for i, g in enumerate(got.column("galaxy_id").to_pylist())}
    out = np.full((len(ids), len(MORPH_COLUMNS)), np.nan)
    values = np.column_stack([np.asarray(got.column(c).to_numpy(zero_copy_only=False), np.float64)
                              for c in MORPH_COLUMNS]) if got.num_rows else np.empty((0, len(MORPH_COLUMNS)))
    for i, g in enumerate(ids):
        j = by_id.get(g)
        if j is not None:
            out[i] = values[j]
    return out


@dataclass(frozen=True)
class AnomalyResult(StageResult):
    """What :func:`score_anomalies` wrote: rows per encoder and method, the versions, the seconds."""

    scored: dict
    """``{encoder: {"rows": n, "embeddings_version": v, "methods": [...], "anomaly_version": w}}``."""
    params: dict
    with_morphometrics: bool
    seconds: float
    too_few: dict = field(default_factory=dict)
    """``{encoder: rows}`` of the tables left unscored (fewer than ``MIN_VECTORS`` vectors)."""


def _encoders(wh: Warehouse, encoders: Sequence[str] | None) -> list[str]:
    present = sorted(encoder_of_table(t) or t for t in wh.tables() if t.startswith(TABLE_PREFIX) and wh.count(t) > 0)
    if not encoders:
        if not present:
            raise InputError("no embeddings stored: run the embeddings first (astrovision embed / demo)")
        return present
    missing = [e for e in encoders if e not in present]
    if missing:
        raise InputError(f"no embeddings stored for {', '.join(missing)}; present: {', '.join(present) or 'none'}")
    return list(encoders)


def score_anomalies(wh: Warehouse, encoders: Sequence[str] | None = None, methods: Sequence[str] = METHODS,
                    params: AnomalyParams | None = None, *, with_morphometrics: bool = False,
                    run_id: str | None = None, log: LogFn = lambda _m: None) -> AnomalyResult:
    """Score every galaxy of each encoder's table by each method; replace that (encoder, method)'s rows.

    Parameters
    ----------
    wh : Warehouse
    encoders : sequence of str, optional
        Default: every embeddings table with rows.
    methods : sequence of str
        From :data:`features.anomaly.METHODS`.
    params : AnomalyParams, optional
    with_morphometrics : bool
        Append the trusted morphometrics (:data:`MORPH_COLUMNS`, NaN where not ``morph_ok``) to the vectors.
    run_id : str, optional
    log : callable

    Raises
    ------
    features.errors.InputError
        No embeddings, an unknown encoder or method, too few vectors (nothing written).
    """
    params = params or AnomalyParams()
    t0 = time.perf_counter()
    scored: dict = {}
    too_few: dict = {}
    for enc in _encoders(wh, encoders):
        v = encoder_vectors(wh, enc)
        if len(v.ids) < MIN_VECTORS:
            too_few[enc] = len(v.ids)
            log(f"anomaly_scores: {enc}: {len(v.ids)} vectors, fewer than {MIN_VECTORS}: not scored")
            continue
        extra = _morphometrics(wh, v.ids) if with_morphometrics else None
        got = score_vectors(v.x, methods, params, extra)
        p_json = json.dumps({**asdict(params), "with_morphometrics": with_morphometrics})
        version = 0
        for method, s in got.items():
            n = len(v.ids)
            rows = pa.table({"galaxy_id": v.ids, "encoder": [enc] * n, "method": [method] * n,
                             "score": s.raw.astype(np.float64), "rank": s.rank.astype(np.float64),
                             "embeddings_version": [v.version] * n, "params_json": [p_json] * n})
            version = wh.replace("anomaly_scores", rows, where=f"encoder = {quote(enc)} AND method = {quote(method)}",
                                 run_id=run_id)
            log(f"anomaly_scores: {enc} {method}: {n} galaxies (embeddings v{v.version})")
        scored[enc] = {"rows": len(v.ids), "embeddings_version": v.version, "methods": list(got),
                       "anomaly_version": version}
    return AnomalyResult(scored=scored, params=asdict(params), with_morphometrics=with_morphometrics,
                         seconds=round(time.perf_counter() - t0, 3), too_few=too_few)


def top_anomalies(wh: Warehouse, encoder: str | None = None, method: str = "iforest", limit: int = 20) -> pa.Table:
    """The ``limit`` most anomalous galaxies of the ``anomalies`` view (one encoder: the given or the first)."""
    if method not in METHODS:
        raise InputError(f"unknown anomaly method {method!r}; known: {', '.join(METHODS)}")
    if not wh.exists("anomaly_scores") or wh.count("anomaly_scores") == 0:
        raise InputError("no anomaly scores stored: run `astrovision anomalies --compute` (or the anomaly_scores asset)")
    if encoder is None:
        encoder = wh.sql_result("SELECT min(encoder) AS e FROM anomaly_scores", limit=None).table.column("e")[0].as_py()
    q = (f"SELECT galaxy_id, encoder, method, anomaly_rank, anomaly_score, label_name FROM anomalies "
         f"WHERE encoder = {quote(encoder)} AND method = {quote(method)} ORDER BY anomaly_rank DESC, galaxy_id LIMIT {int(limit)}")
    return wh.sql_result(q, limit=None).table
