"""Anomaly scores and active learning with a simulated labeller (issue 26), and the cost of the scores.

The labeller is an oracle answering from a known class:

- ``demo``: the synthetic survey (``features.sources.synthetic``), "interesting" = Merging and Disturbed
  at their natural share (Galaxy10 DECaLS's class counts);
- ``demo+artefacts``: the same survey plus ``--artefact-frac`` injected artefacts (satellite trails,
  saturated stars with spikes, dead columns) painted on copies of random galaxies; they are NOT
  interesting (the distractors an anomaly score favours, Astronomaly's point);
- ``gz1``: the real SDSS frames of ``../shared/data/gz1_sdss`` (centre 140 px, as the known trap says),
  "interesting" = the "Don't know" images (mostly stars and artefacts) among the other GZ1 galaxies.

Vectors come from offline encoders (no weights to download): ``random_vits14`` (timm's ViT-S/14 with
its seeded random initialisation, at 56 px) and ``pixels`` (the image downsampled to 16 x 16, the
analysis baseline). Each seed draws 80 % of the galaxies, refits the scores (seeded) and runs:

- ``random``: interesting galaxies among the first 100 of a seeded shuffle;
- ``anomaly <method>``: among the 100 with the highest anomaly rank;
- ``AL <model>/<method> @L``: the person is shown the anomaly order, labels 5 at a time, the ranking
  model is retrained after each 5 (:func:`models.ranking.rank_galaxies`, the product's defaults:
  anomaly weight 0.2, every 5th place the most uncertain); after ``L`` labels the first 100 shown are the
  ``L`` labelled ones plus the first ``100 - L`` of the model's acquisition order;
- ``more-like p@10``: precision@10 of "more like these" from 5 random interesting galaxies.

Means with 95 % bootstrap intervals over the seeds (10,000 resamples); the ratio of AL @50 to anomaly
alone is bootstrapped over paired seeds. ``--cost N`` times the scores of ``N`` seeded 384-d vectors
(wall seconds, CPU seconds, peak RSS) instead.

Usage::

    flock /tmp/astrovision-heavy.lock .venv/bin/python benchmarks/bench_active_learning.py --seeds 10
    flock /tmp/astrovision-heavy.lock .venv/bin/python benchmarks/bench_active_learning.py --cost 1000000
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from features.anomaly import METHODS, AnomalyParams, reduce, score_vectors
from models.ranking import MODELS, RankingParams, more_like_these, rank_galaxies

INTERESTING_DEMO = ("Merging", "Disturbed")
LABEL_STEPS = (10, 25, 50)
SHOWN = 100
BATCH = 5


# ------------------------------------------------------------------------------------ data
def _artefact(img: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    out = img.astype(np.float32).copy()
    h, w = out.shape[:2]
    if kind == "trail":  # a straight bright streak across the frame
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[:h, :w]
        c = rng.uniform(0.3, 0.7, 2) * (h, w)
        dist = np.abs((yy - c[0]) * np.cos(angle) - (xx - c[1]) * np.sin(angle))
        out += (255 * np.exp(-0.5 * (dist / 0.8) ** 2))[..., None]
    elif kind == "star":  # a saturated star with diffraction spikes
        cy, cx = rng.integers(h // 5, 4 * h // 5, 2)
        yy, xx = np.mgrid[:h, :w]
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2
        star = 400 * np.exp(-r2 / (2 * 3.0 ** 2))
        star += 180 * (np.exp(-np.abs(yy - cy) / 1.0) + np.exp(-np.abs(xx - cx) / 1.0)) * np.exp(-np.sqrt(r2) / 25)
        out += star[..., None]
    else:  # dead columns
        c0 = rng.integers(0, w - 4)
        out[:, c0:c0 + rng.integers(2, 5)] = 0
    return np.clip(out, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=2)
def _demo_survey(n: int, size: int, seed: int) -> tuple[tuple[np.ndarray, ...], tuple[str, ...]]:
    from features.sources.classes import GALAXY10_CLASSES
    from features.sources.synthetic import SyntheticSurvey

    survey = SyntheticSurvey(n=n, seed=seed, size=size)
    images = []
    for batch in survey.iter_batches(0, n, batch_size=64):
        images.extend(batch.images)
    return tuple(images), tuple(GALAXY10_CLASSES[int(v)] for v in survey.labels)


def load_demo(n: int, size: int, artefact_frac: float, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Images, interesting mask and kind (class name or artefact) of a demo survey (+ artefacts)."""
    rendered, names = _demo_survey(n, size, seed)  # rendered once for both demo runs
    images, kinds = list(rendered), list(names)
    if artefact_frac > 0:
        rng = np.random.default_rng(seed + 1)
        m = round(artefact_frac * n)
        for i, src in enumerate(rng.choice(n, m, replace=False)):
            kind = ("trail", "star", "dead_columns")[i % 3]
            images.append(_artefact(images[src], kind, rng))
            kinds.append("artefact:" + kind)
    interesting = np.array([k in INTERESTING_DEMO for k in kinds])
    return images, interesting, kinds


def load_gz1(shared: Path, crop: int = 140) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """The GZ1 SDSS frames' centres; interesting = "Don't know"."""
    from PIL import Image

    root = shared / "data" / "gz1_sdss"
    images, kinds = [], []
    with (root / "catalog.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            img = np.asarray(Image.open(root / "images" / f"{row['id']}.jpg").convert("RGB"))
            h, w = img.shape[:2]
            y0, x0 = (h - crop) // 2, (w - crop) // 2
            images.append(img[y0:y0 + crop, x0:x0 + crop])
            kinds.append(row["gz1_class"])
    return images, np.array([k == "Don't know" for k in kinds]), kinds


def _small(im: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(im).resize((16, 16), Image.BILINEAR), np.float32).ravel() / 255


def embed(images: list[np.ndarray], encoder: str) -> np.ndarray:
    """Vectors of ``images`` by an offline encoder: ``random_vits14`` at 56 px, ``pixels`` (16 x 16), or
    ``pixels_asym`` (16 x 16 of the image and of its residual from its 180-degree rotation about the
    stamp centre, ``|I - I_180|``: a hand-made asymmetry map, a baseline, not a product encoder)."""
    if encoder == "pixels":
        return np.stack([_small(im) for im in images])
    if encoder == "pixels_asym":
        return np.stack([np.concatenate([_small(im), _small(np.abs(im.astype(np.int16) - im[::-1, ::-1].astype(np.int16))
                                                           .astype(np.uint8))]) for im in images])
    from features.embeddings import embed_images, load_encoder

    enc = load_encoder(encoder, img_size=56, allow_download=False)
    cls, _ = embed_images(images, enc, batch_size=64, device="cpu")
    return np.asarray(cls, np.float32)


# ------------------------------------------------------------------------------------ the labeller
def _hits(order: np.ndarray, interesting: np.ndarray) -> int:
    return int(interesting[order[:SHOWN]].sum())


def active_learning(z: np.ndarray, anomaly_rank: np.ndarray, interesting: np.ndarray, model: str,
                    seed: int, params: RankingParams | None = None) -> dict[int, int]:
    """Interesting among the first 100 shown after each of :data:`LABEL_STEPS` labels.

    ``params`` (the product's defaults with ``model`` and ``seed`` when not given) lets a study vary them.
    """
    params = params or RankingParams(model=model, seed=seed)
    order = np.argsort(-anomaly_rank, kind="stable")
    shown: list[int] = []
    out = {}
    while len(shown) < max(LABEL_STEPS):
        seen = set(shown)
        shown += [int(i) for i in order if int(i) not in seen][:BATCH]
        r = rank_galaxies(z, anomaly_rank, shown, interesting[shown].astype(float), params)
        order = r.order
        if len(shown) in LABEL_STEPS:
            first = np.concatenate([np.asarray(shown), order[:SHOWN - len(shown)]])
            out[len(shown)] = _hits(first, interesting)
    return out


def run_dataset(x: np.ndarray, interesting: np.ndarray, seeds: int, models: tuple[str, ...]) -> dict[str, list[float]]:
    """Per-seed values of every measure on one set of vectors."""
    res: dict[str, list[float]] = {}

    def put(key: str, value: float) -> None:
        res.setdefault(key, []).append(float(value))

    n = x.shape[0]
    for s in range(seeds):
        rng = np.random.default_rng(1000 + s)
        sub = np.sort(rng.choice(n, int(0.8 * n), replace=False))
        xs, ys = x[sub], interesting[sub]
        put("random", _hits(rng.permutation(sub.size), ys))
        scores = score_vectors(xs, METHODS, AnomalyParams(seed=s))
        for m, sc in scores.items():
            put(f"anomaly {m}", _hits(np.argsort(-sc.rank, kind="stable"), ys))
        z = reduce(xs, AnomalyParams(seed=s))
        for model in models:
            for m, sc in scores.items():
                for L, hits in active_learning(z, sc.rank, ys, model, s).items():
                    put(f"AL {model}/{m} @{L}", hits)
        pos = rng.choice(np.flatnonzero(ys), 5, replace=False)
        top = more_like_these(xs, pos, k=10)
        put("more-like p@10", ys[top].mean())
    return res


def _ci(values: list[float], boot: int = 10_000) -> tuple[float, float, float]:
    v = np.asarray(values)
    rng = np.random.default_rng(0)
    means = v[rng.integers(0, v.size, (boot, v.size))].mean(axis=1)
    return float(v.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _ratio_ci(num: list[float], den: list[float], boot: int = 10_000) -> tuple[float, float, float]:
    a, b = np.asarray(num), np.asarray(den)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, a.size, (boot, a.size))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = a[idx].mean(axis=1) / b[idx].mean(axis=1)
    return float(a.mean() / b.mean()), float(np.nanpercentile(ratios, 2.5)), float(np.nanpercentile(ratios, 97.5))


def table(name: str, res: dict[str, list[float]], n: int, share: float) -> str:
    lines = [f"\n**{name}** ({n} galaxies, {share:.1%} interesting; 80 % drawn per seed, "
             f"{len(res['random'])} seeds)\n", "| measure | mean | 95 % CI |", "|---|---:|---|"]
    for key, vals in res.items():
        m, lo, hi = _ci(vals)
        fmt = "{:.2f}" if "p@10" in key else "{:.1f}"
        lines.append(f"| {key} | {fmt.format(m)} | {fmt.format(lo)} - {fmt.format(hi)} |")
    best = max(METHODS, key=lambda m: np.mean(res[f"anomaly {m}"]))
    for key in [k for k in res if k.endswith(f"@{max(LABEL_STEPS)}")]:
        r, lo, hi = _ratio_ci(res[key], res[f"anomaly {best}"])
        lines.append(f"| ratio {key} / anomaly {best} (the better method) | {r:.2f} | {lo:.2f} - {hi:.2f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ cost
def cost(n: int, dim: int = 384) -> str:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x[: n // 100] += 3.0 * rng.standard_normal((1, dim), dtype=np.float32)
    lines = [f"\n**cost** ({n:,} seeded {dim}-d vectors, defaults: 32 PCs, 200 trees, knn k=10 on a "
             f"{AnomalyParams().max_reference:,}-vector reference sample)\n",
             "| method | wall s | CPU s | peak RSS GiB (process) |", "|---|---:|---:|---:|"]
    for m in METHODS:
        t0, c0 = time.perf_counter(), time.process_time()
        score_vectors(x, [m])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        lines.append(f"| {m} | {wall:.1f} | {cpu:.1f} | {rss:.2f} |")
    return "\n".join(lines)


def vectors(ds: str, enc: str, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """Vectors and interesting mask of data set ``ds`` by encoder ``enc`` (from ``args.cache`` if there)."""
    path = None
    if args.cache:
        frac = args.artefact_frac if "artefacts" in ds else 0.0
        tag = "gz1" if ds == "gz1" else f"{ds}_n{args.demo_n}_s{args.size}_a{frac:g}"
        path = args.cache / f"{tag}_{enc}.npz"
        if path.exists():
            with np.load(path) as f:
                return f["x"], f["interesting"]
    if ds == "gz1":
        images, interesting, _ = load_gz1(args.shared)
    else:
        images, interesting, _ = load_demo(args.demo_n, args.size, args.artefact_frac if "artefacts" in ds else 0.0)
    x = embed(images, enc)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, x=x, interesting=interesting)
    return x, interesting


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--demo-n", type=int, default=1500)
    p.add_argument("--size", type=int, default=96, help="demo stamp side (px)")
    p.add_argument("--artefact-frac", type=float, default=0.03)
    p.add_argument("--encoders", nargs="+", default=["random_vits14", "pixels_asym"])
    p.add_argument("--datasets", nargs="+", default=["demo", "demo+artefacts", "gz1"])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    p.add_argument("--cost", type=int, default=0, help="time the scores of this many vectors instead")
    p.add_argument("--json", type=Path, default=None, help="also write the per-seed values here")
    p.add_argument("--cache", type=Path, default=None,
                   help="keep each data set's vectors and interesting mask here (.npz) and reuse them")
    args = p.parse_args(argv)
    if args.cost:
        print(cost(args.cost))
        return 0
    dump = {}
    for ds in args.datasets:
        t0 = time.perf_counter()
        for enc in args.encoders:
            x, interesting = vectors(ds, enc, args)
            res = run_dataset(x, interesting, args.seeds, tuple(args.models))
            print(table(f"{ds}, {enc}", res, x.shape[0], float(interesting.mean())), flush=True)
            dump[f"{ds}/{enc}"] = res
        print(f"\n({ds}: {time.perf_counter() - t0:.0f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(dump, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
