"""Why is active learning @50 not twice the anomaly score alone? Vary one ranking choice at a time (issue 26).

Runs the simulated labeller of ``bench_active_learning.py`` (same seeded 80 % draws, same anomaly
scores, same loop) over *variants* of the ranking: the model, the anomaly weight, exploration, the
features the model sees. Vectors come from the benchmark's ``--cache`` (run it first). Each variant is
written ``model[:key=value...]`` with keys ``w`` (anomaly weight), ``e`` (explore every), ``pca``
(principal components of the model's features; the anomaly scores keep the product's 32), ``neg``
(how a set of negatives only ranks, :data:`NEGATIVES_ONLY`), ``wpos`` (the anomaly weight falls from 1
to ``w`` over the first ``wpos`` positives, :data:`WEIGHT_BY_POSITIVES`). Models: the
product's (``rf``, ``gp``, and whatever :data:`models.ranking.MODELS` holds) plus two study-only ones,
``rfc`` (a random-forest *classifier* with balanced class weights; uncertainty = the trees' spread) and
``lrq`` (a balanced logistic regression; uncertainty = the spread of a 10-member bootstrap committee,
query by committee).

Prints, per data set and variant, AL @10/@25/@50 (mean and 95 % bootstrap CI over seeds) and the ratio
of @50 to the better anomaly method alone, paired over seeds, and the difference to the first variant.

Usage::

    flock /tmp/astrovision-heavy.lock .venv/bin/python benchmarks/study_ranking.py \\
        --cache /tmp/anomaly_bench/vec --sets demo+artefacts_n1200_s64_a0.03_pixels_asym --seeds 6 \\
        --variants rf gp rf:w=0 rf:e=0
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_active_learning as bench
from bench_active_learning import _ci, _hits, _ratio_ci, active_learning

import models.ranking as ranking
from features.anomaly import METHODS, AnomalyParams, reduce, score_vectors
from models.ranking import RankingParams

STUDY_MODELS = ("rfc", "lrq")


def _study_fit_predict(z: np.ndarray, idx: np.ndarray, y: np.ndarray,
                       params: RankingParams) -> tuple[np.ndarray, np.ndarray]:
    yb = (y > 0.5).astype(int)
    if params.model == "rfc":
        from sklearn.ensemble import RandomForestClassifier

        forest = RandomForestClassifier(n_estimators=params.n_estimators, random_state=params.seed, n_jobs=1,
                                        class_weight="balanced_subsample")
        forest.fit(z[idx], yb)
        col = list(forest.classes_).index(1)
        per_tree = np.stack([t.predict_proba(z)[:, col] for t in forest.estimators_])
        return per_tree.mean(axis=0), per_tree.std(axis=0)
    from sklearn.linear_model import LogisticRegression

    def fit(rows: np.ndarray) -> np.ndarray:
        lr = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000)
        lr.fit(z[idx[rows]], yb[rows])
        return lr.predict_proba(z)[:, 1]

    mean = fit(np.arange(idx.size))
    rng = np.random.default_rng(params.seed)
    committee = []
    for _ in range(10):
        pick = rng.choice(idx.size, idx.size, replace=True)
        if np.unique(yb[pick]).size == 2:
            committee.append(fit(pick))
    std = np.stack(committee).std(axis=0) if committee else np.zeros(z.shape[0])
    return mean, std


_product_fit_predict = ranking._fit_predict
_product_rank_galaxies = ranking.rank_galaxies
WEIGHT_BY_POSITIVES = {"k": 0}
"""``wpos=k``: the anomaly weight is ``max(w, 1 - positives / k)`` (0: the product's fixed ``w``)."""
NEGATIVES_ONLY = {"mode": "far"}
"""How a label set of negatives only ranks: ``far`` (the product: far from the negatives' mean) or
``anom`` (the anomaly rank, times one minus the rank of the cosine similarity to the nearest negative),
``anom0`` (the anomaly rank as it is: nothing is known yet of what the person wants), ``cos`` (the
anomaly rank times one minus the cosine similarity to the nearest negative, clipped to [0, 1])."""


def _rank_galaxies(z: np.ndarray, anomaly_rank: np.ndarray, labelled: list[int], values: np.ndarray,
                   params: RankingParams) -> ranking.Ranking:
    y = np.asarray(values, np.float64)
    if WEIGHT_BY_POSITIVES["k"]:  # trust the anomaly order until the person has marked k positives
        w = max(params.anomaly_weight, 1.0 - float((y > 0.5).sum()) / WEIGHT_BY_POSITIVES["k"])
        params = dataclasses.replace(params, anomaly_weight=w)
    if NEGATIVES_ONLY["mode"] == "far" or np.unique(y).size > 1 or y[0] > 0.5:
        return _product_rank_galaxies(z, anomaly_rank, labelled, values, params)
    from features.anomaly import normalise, to_rank

    prediction = np.asarray(anomaly_rank, np.float64)
    if NEGATIVES_ONLY["mode"] in ("anom", "cos"):
        zn = normalise(z)
        nearest = (zn @ zn[list(labelled)].T).max(axis=1)
        prediction = prediction * (1.0 - (to_rank(nearest) if NEGATIVES_ONLY["mode"] == "anom"
                                          else np.clip(nearest, 0.0, 1.0)))
    uncertainty = 1.0 - np.abs(2.0 * to_rank(prediction) - 1.0)
    w = params.anomaly_weight
    score = (1.0 - w) * prediction + w * np.asarray(anomaly_rank, np.float64)
    mask = np.zeros(z.shape[0], bool)
    mask[list(labelled)] = True
    order = ranking.acquisition_order(score, uncertainty, mask, params.explore_every)
    position = np.zeros(z.shape[0], np.int64)
    position[order] = np.arange(1, order.size + 1)
    return ranking.Ranking(score, prediction, uncertainty, order, position, "")


def _fit_predict(z: np.ndarray, idx: np.ndarray, y: np.ndarray, params: RankingParams) -> tuple[np.ndarray, np.ndarray]:
    if params.model in STUDY_MODELS:
        return _study_fit_predict(z, idx, y, params)
    return _product_fit_predict(z, idx, y, params)


def parse_variant(spec: str) -> tuple[RankingParams, int, str, int]:
    """``model[:w=..][:e=..][:pca=..][:neg=..][:wpos=..]`` -> ranking params (seed 0), the model's
    components, the negatives-only mode (:data:`NEGATIVES_ONLY`) and :data:`WEIGHT_BY_POSITIVES`."""
    model, *opts = spec.split(":")
    kw: dict[str, float | int | str] = {"model": model}
    pca = AnomalyParams().n_components
    neg, wpos = "far", 0
    for o in opts:
        k, v = o.split("=")
        if k == "w":
            kw["anomaly_weight"] = float(v)
        elif k == "e":
            kw["explore_every"] = int(v)
        elif k == "pca":
            pca = int(v)
        elif k == "neg":
            neg = v
        elif k == "wpos":
            wpos = int(v)
        else:
            raise SystemExit(f"unknown variant key {k!r} in {spec!r}")
    return RankingParams(**kw), pca, neg, wpos  # type: ignore[arg-type]


def study(x: np.ndarray, interesting: np.ndarray, seeds: int, variants: list[str],
          methods: tuple[str, ...]) -> dict[str, list[float]]:
    res: dict[str, list[float]] = {}

    def put(key: str, value: float) -> None:
        res.setdefault(key, []).append(float(value))

    n = x.shape[0]
    for s in range(seeds):
        rng = np.random.default_rng(1000 + s)  # the benchmark's draw
        sub = np.sort(rng.choice(n, int(0.8 * n), replace=False))
        xs, ys = x[sub], interesting[sub]
        scores = score_vectors(xs, METHODS, AnomalyParams(seed=s))
        for m, sc in scores.items():
            put(f"anomaly {m}", _hits(np.argsort(-sc.rank, kind="stable"), ys))
        zs: dict[int, np.ndarray] = {}
        for v in variants:
            params, pca, NEGATIVES_ONLY["mode"], WEIGHT_BY_POSITIVES["k"] = parse_variant(v)
            params = dataclasses.replace(params, seed=s)
            if pca not in zs:
                zs[pca] = reduce(xs, AnomalyParams(seed=s, n_components=pca))
            for m in methods:
                for L, hits in active_learning(zs[pca], scores[m].rank, ys, params.model, s, params).items():
                    put(f"{v} | {m} @{L}", hits)
    return res


def report(name: str, res: dict[str, list[float]], variants: list[str], methods: tuple[str, ...]) -> str:
    best = max(METHODS, key=lambda m: np.mean(res[f"anomaly {m}"]))
    lines = [f"\n**{name}** ({len(res[f'anomaly {best}'])} seeds; better anomaly alone: {best} "
             f"{np.mean(res[f'anomaly {best}']):.1f})\n",
             "| variant | start | @10 | @25 | @50 (95 % CI) | ratio @50 / anomaly (CI) | @50 - first variant (CI) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for v in variants:
        for m in methods:
            k = f"{v} | {m}"
            m50, lo, hi = _ci(res[f"{k} @50"])
            r, rlo, rhi = _ratio_ci(res[f"{k} @50"], res[f"anomaly {best}"])
            d = np.asarray(res[f"{k} @50"]) - np.asarray(res[f"{variants[0]} | {m} @50"])
            dm, dlo, dhi = _ci(list(d))
            lines.append(f"| {v} | {m} | {np.mean(res[f'{k} @10']):.1f} | {np.mean(res[f'{k} @25']):.1f} | "
                         f"{m50:.1f} ({lo:.1f} - {hi:.1f}) | {r:.2f} ({rlo:.2f} - {rhi:.2f}) | "
                         f"{dm:+.1f} ({dlo:+.1f} - {dhi:+.1f}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, required=True, help="the benchmark's --cache folder")
    p.add_argument("--sets", nargs="+", required=True, help="cached .npz names without the suffix")
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--methods", nargs="+", default=list(METHODS), help="anomaly orders the person starts from")
    p.add_argument("--variants", nargs="+", default=["rf", "gp", "rfc", "lrq"])
    args = p.parse_args(argv)
    ranking._fit_predict = _fit_predict
    ranking.MODELS = tuple(dict.fromkeys(ranking.MODELS + STUDY_MODELS))
    bench.rank_galaxies = _rank_galaxies
    for name in args.sets:
        t0 = time.perf_counter()
        with np.load(args.cache / f"{name}.npz") as f:
            x, interesting = f["x"], f["interesting"]
        res = study(x, interesting, args.seeds, args.variants, tuple(args.methods))
        print(report(name, res, args.variants, tuple(args.methods)), flush=True)
        print(f"\n({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
