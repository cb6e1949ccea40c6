"""Ranking stage: active learning on a person's labels, and "more like these".

Glue only (no Dagster, no argparse). :func:`rank` reads the encoder's vectors, the stored anomaly ranks of
one method (``anomaly_scores``) and the newest labels of one name, trains the ranking model
(:func:`models.ranking.rank_galaxies`) and replaces the ``rankings`` rows of that (label, who, encoder)
in one commit, with the ``labels``, embeddings and anomaly table versions it used. Labels of galaxies
that have no vector in the encoder's table are left out and counted. :func:`more_like_these` turns
several positives (and negatives) into one Rocchio query vector and searches it through the
warehouse's similarity search (the ANN index at scale, with ``where`` prefilters).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from features.anomaly import DEFAULT_METHOD, AnomalyParams, normalise, reduce
from features.errors import InputError
from models.ranking import RankingParams, rank_galaxies, rocchio
from stages.anomaly import encoder_vectors
from stages.labels import latest_labels
from stages.results import StageResult
from warehouse import Warehouse, quote
from warehouse.schemas.embeddings import TABLE_PREFIX

__all__ = ["ANYONE", "RankResult", "more_like_these", "rank", "ranked"]

ANYONE = "*"
"""The ``who`` of a ranking trained on everybody's labels."""


@dataclass(frozen=True)
class RankResult(StageResult):
    """What :func:`rank` wrote."""

    label: str
    who: str
    encoder: str
    method: str
    n_labels: int
    n_positive: int
    labels_left_out: int
    rows: int
    labels_version: int
    embeddings_version: int
    anomaly_version: int
    note: str
    params: dict
    seconds: float


def _anomaly_ranks(wh: Warehouse, encoder: str, method: str, ids: list[str]) -> tuple[np.ndarray, int]:
    if not wh.exists("anomaly_scores"):
        raise InputError("no anomaly scores stored: run `astrovision anomalies --compute` first")
    ds = wh.dataset("anomaly_scores")
    t = wh.sql_result(f"SELECT galaxy_id, rank FROM anomaly_scores WHERE encoder = {quote(encoder)} "
                      f"AND method = {quote(method)}", limit=None).table
    got = dict(zip(t.column("galaxy_id").to_pylist(), t.column("rank").to_pylist(), strict=True))
    if not got:
        raise InputError(f"no {method} anomaly scores for {encoder}: run `astrovision anomalies --compute`")
    # a galaxy embedded after the scores were computed counts as middling (0.5) until they are recomputed
    return np.array([got.get(g, 0.5) for g in ids], np.float64), ds.version


def rank(wh: Warehouse, label: str, *, who: str | None = None, encoder: str | None = None,
         method: str = DEFAULT_METHOD, params: RankingParams | None = None, run_id: str | None = None) -> RankResult:
    """Retrain the ranking of ``label`` on the newest labels (of ``who``, or everyone) and store it.

    Raises
    ------
    features.errors.InputError
        No labels of that name (for that person) on embedded galaxies, no anomaly scores, unknown encoder.
    """
    from warehouse.search import pick_table

    params = params or RankingParams()
    t0 = time.perf_counter()
    enc = pick_table(wh, encoder).removeprefix(TABLE_PREFIX)
    v = encoder_vectors(wh, enc)
    labels = latest_labels(wh, label, who)
    if not labels:
        raise InputError(f"no labels named {label!r}{f' by {who}' if who else ''}: label some galaxies first "
                         f"(astrovision label ID {label})")
    row = {g: i for i, g in enumerate(v.ids)}
    kept = [(row[g], val) for g, val in labels.items() if g in row]
    if not kept:
        raise InputError(f"none of the {len(labels)} galaxies labelled {label!r} has an {enc} embedding")
    anomaly, anomaly_version = _anomaly_ranks(wh, enc, method, v.ids)
    z = reduce(v.x, AnomalyParams())
    idx, vals = zip(*kept, strict=True)
    r = rank_galaxies(z, anomaly, list(idx), list(vals), params)
    labels_version = wh.dataset("labels").version
    n = len(v.ids)
    labelled_value = np.full(n, np.nan)
    labelled_value[list(idx)] = vals
    who_key = who or ANYONE
    p_json = json.dumps({**asdict(params), "method": method})
    rows = pa.table({
        "galaxy_id": v.ids, "label": [label] * n, "who": [who_key] * n, "encoder": [enc] * n,
        "score": r.score, "prediction": r.prediction, "uncertainty": r.uncertainty, "anomaly_rank": anomaly,
        "position": r.position, "labelled_value": pa.array(labelled_value, pa.float64(), from_pandas=True),
        "n_labels": [len(kept)] * n, "labels_version": [labels_version] * n, "embeddings_version": [v.version] * n,
        "anomaly_version": [anomaly_version] * n, "params_json": [p_json] * n,
    })
    wh.replace("rankings", rows, run_id=run_id,
               where=f"label = {quote(label)} AND who = {quote(who_key)} AND encoder = {quote(enc)}")
    return RankResult(label=label, who=who_key, encoder=enc, method=method, n_labels=len(kept),
                      n_positive=int(sum(1 for x in vals if x > 0.5)), labels_left_out=len(labels) - len(kept),
                      rows=n, labels_version=labels_version, embeddings_version=v.version,
                      anomaly_version=anomaly_version, note=r.note, params=asdict(params),
                      seconds=round(time.perf_counter() - t0, 3))


def ranked(wh: Warehouse, label: str, *, who: str | None = None, encoder: str | None = None,
           limit: int = 20) -> pa.Table:
    """The stored ranking of ``label`` in acquisition order (labelled galaxies left out)."""
    if not wh.exists("rankings"):
        raise InputError(f"no ranking of {label!r}: run `astrovision rank --label {label}`")
    cond = f"r.label = {quote(label)} AND r.who = {quote(who or ANYONE)}"
    if encoder:
        cond += f" AND r.encoder = {quote(encoder)}"
    q = (f"SELECT r.galaxy_id, r.position, r.score, r.prediction, r.uncertainty, r.anomaly_rank, r.encoder, "
         f"g.label_name FROM rankings r JOIN galaxies g USING (galaxy_id) WHERE {cond} AND r.position > 0 "
         f"ORDER BY r.position LIMIT {int(limit)}")
    t = wh.sql_result(q, limit=None).table
    if t.num_rows == 0 and wh.count("rankings", where=f"label = {quote(label)}") == 0:
        raise InputError(f"no ranking of {label!r}: run `astrovision rank --label {label}`")
    return t


def more_like_these(wh: Warehouse, positives: Sequence[str], negatives: Sequence[str] = (), *, k: int = 10,
                    encoder: str | None = None, where: str | None = None) -> pa.Table:
    """The ``k`` galaxies most like ``positives`` and unlike ``negatives`` (those left out), with features.

    Raises
    ------
    features.errors.InputError
        No positive, a galaxy without a vector in the searched table (named), k < 1.
    """
    from warehouse.search import pick_table, similar_plan

    if not positives:
        raise InputError("more like these needs at least one positive galaxy")
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    table = pick_table(wh, encoder)
    asked = list(dict.fromkeys([*positives, *negatives]))
    have = set(wh.has_ids(table, asked))
    missing = [g for g in asked if g not in have]
    if missing:
        raise InputError(f"no {table.removeprefix(TABLE_PREFIX)} embedding for {', '.join(map(repr, missing[:5]))}")
    got = wh.take(table, asked, columns=["vector"]).column("vector").combine_chunks()
    x = normalise(np.asarray(got.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(len(asked), -1))
    pos = [asked.index(g) for g in positives]
    neg = [asked.index(g) for g in negatives]
    q = rocchio(x, pos, neg)
    found = similar_plan(wh, q, k=k + len(asked), where=where, encoder=table.removeprefix(TABLE_PREFIX)).table
    keep = [i for i, g in enumerate(found.column("galaxy_id").to_pylist()) if g not in set(asked)][:k]
    out = found.take(pa.array(keep, pa.int64()))
    return out.set_column(out.column_names.index("rank"), "rank", pa.array(range(1, out.num_rows + 1), pa.int64())) \
        if "rank" in out.column_names else out
