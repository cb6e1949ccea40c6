"""Does the warehouse's own self-supervised encoder (``ssl_resnet18``) learn more than the random baseline?

Two parts, each against ``random_vits14`` (the random-weights ViT-S/14) and a pixel baseline (the
8 x 8 thumbnails and channel statistics of :func:`models.baselines.pixel_features`):

``rings``
    Ring precision@10 of lookalike search on the 370 real GZ DECaLS galaxies of ``../shared``: for
    every ring galaxy, the fraction of its 10 nearest neighbours (cosine, on the vector search uses)
    that are rings, averaged over the 185 rings (chance 184/369 = 0.499), with a 95% bootstrap
    interval over the ring queries. ``ssl_resnet18`` is pretrained with SimCLR on these 370 images
    only (their ring labels are never read before the evaluation); the same network untrained
    (its seeded random initialisation) is shown as a control. Also the training cost: s/epoch and
    images/s on this machine.

``demo``
    On a demo warehouse (made here with ``astrovision demo``'s code when ``--warehouse`` is not
    given, so the demo's own time and its ``ssl_encoder`` share are measured): the test balanced
    accuracy (95% bootstrap CI) of a linear probe (:func:`models.probe.fit_probe`, ``C`` chosen on
    val) on each feature set, trained and tested on the same galaxies of the demo's split set; and
    the Spearman rho of the top 5 principal components with Gini and g-r (the largest ``|rho|`` of
    the five with its 95% CI; encoders: the ``representation_analysis`` rows, pixels: computed here
    with the same estimator).

Run (from the repository root; each part well under 10 minutes on 2 cores)::

    PYTHONPATH=. HF_HUB_OFFLINE=1 flock /work/wt/bench.lock .venv/bin/python benchmarks/bench_ssl.py rings
    PYTHONPATH=. HF_HUB_OFFLINE=1 flock /work/wt/bench.lock .venv/bin/python benchmarks/bench_ssl.py demo

and ``--json out.json`` to keep the numbers.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ring_precision(vectors: np.ndarray, labels: np.ndarray, k: int = 10, n_boot: int = 2000,
                   seed: int = 0) -> tuple[float, float, float]:
    """Mean fraction of rings among each ring's ``k`` nearest (cosine, self excluded), with a 95% CI."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    dist = 1.0 - unit @ unit.T
    np.fill_diagonal(dist, np.inf)
    nn = np.argsort(dist, axis=1, kind="stable")[:, :k]
    per = (labels[nn] == 1).mean(axis=1)[labels == 1]
    rng = np.random.default_rng(seed)
    boots = per[rng.integers(0, len(per), (n_boot, len(per)))].mean(axis=1)
    return float(per.mean()), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def _pixels(images, size: int = 16) -> np.ndarray:
    from models.baselines import pixel_features
    from models.ssl import to_stamps

    return pixel_features(to_stamps(images, size).numpy())


def part_rings(args: argparse.Namespace) -> dict:
    import torch

    from features.embeddings import ENCODERS, Encoder, embed_images, load_encoder, load_image_file
    from features.ssl import SSLConfig
    from features.weights import WeightsOrigin
    from models.ssl import to_stamps, train_simclr
    from stages.ssl import new_backbone

    data = Path(args.data)
    with (data / "catalog.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    images = [load_image_file(data / "images" / f"{r['id']}.png") for r in rows]
    spec = ENCODERS["ssl_resnet18"]
    out: dict = {"n": len(images), "chance": None, "rows": {}}
    t0 = time.perf_counter()
    cls_random, _ = embed_images(images, load_encoder("random_vits14"))
    t_random = time.perf_counter() - t0
    pixels = _pixels(images)
    backbone, start = new_backbone(spec, "scratch", seed=args.seed)
    enc = Encoder(spec, backbone, "", WeightsOrigin.SELF_SUPERVISED, spec.img_size)
    cls_init, _ = embed_images(images, enc)
    cfg = SSLConfig(epochs=args.epochs, seed=args.seed)
    stamps = to_stamps(images, spec.img_size)
    torch.manual_seed(args.seed)
    res = train_simclr(stamps, backbone, cfg, log=lambda m: print(m, flush=True))
    cls_ssl, _ = embed_images(images, enc)
    labels = np.array([int(r["ring"]) for r in rows])  # read only now, for the evaluation
    n1 = int(labels.sum())
    out["chance"] = (n1 - 1) / (len(labels) - 1)
    for name, vec in (("ssl_resnet18 (SimCLR on these 370 images)", cls_ssl),
                      ("ssl_resnet18 untrained (its seeded init)", cls_init),
                      ("random_vits14", cls_random), ("pixels", pixels)):
        out["rows"][name] = ring_precision(vec, labels, args.k)
    out["train"] = {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "start": start,
                    "seconds_per_epoch": float(np.mean(res.epoch_seconds)),
                    "images_per_second": res.images_per_second, "final_loss": res.losses[-1],
                    "first_loss": res.losses[0], "random_vits14_embed_s": t_random}
    print(f"\n{len(labels)} ring-sample galaxies ({n1} rings); ring precision@{args.k}, chance {out['chance']:.3f}\n")
    print("| features | ring precision@10 | 95% CI |\n|---|---|---|")
    for name, (v, lo, hi) in out["rows"].items():
        print(f"| {name} | {v:.3f} | {lo:.3f}-{hi:.3f} |")
    t = out["train"]
    print(f"\nSimCLR: {t['epochs']} epochs, batch {t['batch_size']}, {t['seconds_per_epoch']:.1f} s/epoch, "
          f"{t['images_per_second']:.0f} images/s (2 views each), NT-Xent {t['first_loss']:.2f} -> {t['final_loss']:.2f}")
    return out


def _probe_row(feats: dict[str, np.ndarray], split, seed: int) -> tuple[float, float, float]:
    from models.baselines import balanced_accuracy_interval
    from models.probe import fit_probe

    probe = fit_probe(feats["train"], split.y["train"], feats["val"], split.y["val"],
                      num_classes=split.num_classes, seed=seed)
    pred = probe.predict_proba(feats["test"]).argmax(axis=1)
    return balanced_accuracy_interval(split.y["test"], pred, seed=seed)


def _spearman_pixels(wh, quantities: dict[str, dict[str, float]], n_pcs: int = 5) -> dict[str, tuple]:
    from sklearn.decomposition import PCA

    from models.baselines import pixel_features
    from models.representation import spearman_ci
    from stages.training import pixel_stamps

    ids = sorted(wh.read("galaxies", columns=["galaxy_id"]).column("galaxy_id").to_pylist())
    x = pixel_features(pixel_stamps(wh, ids))
    pcs = PCA(n_components=n_pcs, random_state=0).fit_transform((x - x.mean(0)) / (x.std(0) + 1e-8))
    pos = {g: i for i, g in enumerate(ids)}
    out = {}
    for q, vals in quantities.items():
        common = [g for g in ids if g in vals]
        y = np.array([vals[g] for g in common])
        ests = [spearman_ci(pcs[[pos[g] for g in common], j], y, seed=0) for j in range(n_pcs)]
        best = max(range(n_pcs), key=lambda j: abs(ests[j].value))
        out[q] = (best + 1, ests[best].value, ests[best].ci_low, ests[best].ci_high)
    return out


def part_demo(args: argparse.Namespace) -> dict:
    from models.baselines import pixel_features
    from models.config import make_config
    from service.commands.demo import run_demo
    from stages.analysis import _quantity_values
    from stages.ssl import read_record
    from stages.training import load_split, pixel_stamps
    from warehouse import Warehouse

    out: dict = {}
    if args.warehouse:
        wh = Warehouse.open(args.warehouse)
    else:
        wh = Warehouse.open(Path(tempfile.mkdtemp(prefix="bench_ssl_")) / "wh")
        t0 = time.perf_counter()
        run_demo(wh, n=args.n, progress=False)
        out["demo_seconds"] = time.perf_counter() - t0
    rec = read_record(wh, "ssl_resnet18")
    if rec is None:
        raise SystemExit(f"no ssl_resnet18 in {wh.root}: the demo did not train it (DINOv2 weights present?)")
    out["ssl"] = {k: rec[k] for k in ("init", "n_images", "table_versions", "losses", "epoch_seconds",
                                      "images_per_second", "seconds", "weights_sha256")}
    split = load_split(wh, make_config("dinov2_probe").split_name)
    feats: dict[str, dict[str, np.ndarray]] = {}
    for enc in ("ssl_resnet18", "random_vits14"):
        rows = wh.read(f"embeddings_{enc}", columns=["galaxy_id", "vector"])
        pos = {g: i for i, g in enumerate(rows.column("galaxy_id").to_pylist())}
        vec = np.asarray(rows.column("vector").combine_chunks().flatten().to_numpy(), np.float32).reshape(
            rows.num_rows, -1)
        feats[enc] = {s: vec[[pos[g] for g in split.ids[s]]] for s in ("train", "val", "test")}
    feats["pixels"] = {s: pixel_features(pixel_stamps(wh, split.ids[s])) for s in ("train", "val", "test")}
    out["probe"] = {name: _probe_row(f, split, 0) for name, f in feats.items()}
    out["probe_n_test"] = len(split.ids["test"])
    out["probe_classes"] = split.num_classes
    quantities = {q: v for q, v in _quantity_values(wh).items() if q in ("gini", "g_r")}
    sp: dict[str, dict[str, tuple]] = {}
    rows = wh.sql("SELECT quantity, encoder, statistic, value, ci_low, ci_high FROM representation_analysis "
                  "WHERE statistic LIKE 'spearman_pc%' AND quantity IN ('gini', 'g_r')", limit=None).to_dicts()
    for r in rows:
        cur = sp.setdefault(r["encoder"], {}).get(r["quantity"])
        if cur is None or abs(r["value"]) > abs(cur[1]):
            sp[r["encoder"]][r["quantity"]] = (int(r["statistic"].removeprefix("spearman_pc")), r["value"],
                                               r["ci_low"], r["ci_high"])
    sp["pixels"] = _spearman_pixels(wh, quantities)
    out["spearman"] = sp
    print(f"\nDemo warehouse {wh.root}: {split.num_classes} classes, {out['probe_n_test']} test galaxies")
    if "demo_seconds" in out:
        print(f"demo {out['demo_seconds']:.0f} s, of which ssl_encoder {rec['seconds']:.0f} s "
              f"({len(rec['losses'])} epochs, {np.mean(rec['epoch_seconds']):.1f} s/epoch, "
              f"{rec['images_per_second']:.0f} images/s)")
    print("\n| features | probe test balanced accuracy [95% CI] | max abs rho top-5 PCs, Gini [95% CI] | g-r [95% CI] |")
    print("|---|---|---|---|")
    for name in ("ssl_resnet18", "random_vits14", "pixels"):
        b = out["probe"][name]
        cells = []
        for q in ("gini", "g_r"):
            s = sp.get(name, {}).get(q)
            cells.append(f"{s[1]:+.2f} (PC{s[0]}) [{s[2]:+.2f}, {s[3]:+.2f}]" if s else "n/a")
        print(f"| {name} | {b[0]:.3f} [{b[1]:.3f}-{b[2]:.3f}] | {cells[0]} | {cells[1]} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("rings", "demo"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "gz_decals_rings"))
    ap.add_argument("--epochs", type=int, default=30, help="rings: SimCLR epochs on the 370 images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--warehouse", help="demo: an existing demo warehouse (default: run the demo here)")
    ap.add_argument("--n", type=int, default=600, help="demo: galaxies when the demo is run here")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args(argv)
    out = part_rings(args) if args.part == "rings" else part_demo(args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
