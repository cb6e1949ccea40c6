"""Does the warehouse's own self-supervised encoder (``ssl_resnet18``) beat random networks and pixels on real galaxies?

``real`` (issue 28 item 4: all arms in one run, seeded)
    SimCLR (the ``SSLConfig`` / ``ViewConfig`` defaults the ``ssl_encoder`` asset uses, unless the
    options say otherwise) pretrains ``ssl_resnet18`` on the galaxy-centred stamps
    (:mod:`features.ssl.stamps`) of every image of ``../shared/data``: the 2,804 GZ1 SDSS frames and
    the 370 GZ DECaLS rings-sample galaxies, labels unread; with ``--transfer`` (default) a second
    encoder on the GZ1 frames only, evaluated on the rings. Arms: the SSL encoder, the same network
    untrained (its seeded init), ``random_vits14`` on the whole frame at 224 px, and 8 x 8 pixel
    thumbnails of the whole frame, of its central third and of the galaxy stamp. Measures: ring
    precision@10 (cosine, over the ring queries, chance 0.499); GZ1 precision@10 by class (Elliptical,
    Edge-on disk, Spiral; mean over classes); a linear probe's test balanced accuracy on a grouped
    stratified split of GZ1 (groups: identical pixels). 95% bootstrap intervals and, for every arm, the
    paired difference ``ssl - arm`` on the same resamples. Also s/epoch and images/s of the training.

``demo``
    On a demo warehouse (made here with ``astrovision demo``'s code when ``--warehouse`` is not
    given, so the demo's own time and its ``ssl_encoder`` share are measured): the test balanced
    accuracy (95% bootstrap CI) of a linear probe (:func:`models.probe.fit_probe`, ``C`` chosen on
    val) on each feature set, trained and tested on the same galaxies of the demo's split set; and
    the Spearman rho of the top 5 principal components with Gini and g-r (the largest ``|rho|`` of
    the five with its 95% CI; encoders: the ``representation_analysis`` rows, pixels: computed here
    with the same estimator).

Run (from the repository root, under the shared lock: ``real`` is about 15 minutes on 2 cores)::

    PYTHONPATH=. HF_HUB_OFFLINE=1 flock /tmp/astrovision-heavy.lock .venv/bin/python benchmarks/bench_ssl.py real
    PYTHONPATH=. HF_HUB_OFFLINE=1 flock /tmp/astrovision-heavy.lock .venv/bin/python benchmarks/bench_ssl.py demo

``--json out.json`` keeps the numbers, ``--cache DIR`` the stamps and the random ViT's embeddings,
``--limit N`` takes N galaxies of each set (a smoke test).
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
    per = per_query_precision(vectors, labels, k)[labels == 1]
    rng = np.random.default_rng(seed)
    boots = per[rng.integers(0, len(per), (n_boot, len(per)))].mean(axis=1)
    return float(per.mean()), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def per_query_precision(vectors: np.ndarray, labels: np.ndarray, k: int = 10) -> np.ndarray:
    """For every galaxy, the fraction of its ``k`` nearest (cosine, self excluded) that share its label."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    dist = 1.0 - unit @ unit.T
    np.fill_diagonal(dist, np.inf)
    nn = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return (labels[nn] == labels[:, None]).mean(axis=1)


def class_mean(per: np.ndarray, labels: np.ndarray, idx: np.ndarray | None = None) -> float:
    """Mean over classes of the per-class mean of ``per`` (on the queries ``idx``, default all)."""
    idx = np.arange(len(per)) if idx is None else idx
    return float(np.mean([per[idx][labels[idx] == c].mean() for c in np.unique(labels)]))


def stratified_boot(labels: np.ndarray, n_boot: int, seed: int) -> list[np.ndarray]:
    """``n_boot`` bootstrap resamples of the indices, each class resampled within itself."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    return [np.concatenate([m[rng.integers(0, len(m), len(m))] for m in members]) for _ in range(n_boot)]


def interval(values: list[float] | np.ndarray, point: float) -> tuple[float, float, float]:
    """``(point, 2.5th, 97.5th percentile)`` of bootstrap ``values``."""
    return float(point), float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))


def _pixels(images, size: int = 16) -> np.ndarray:
    from models.baselines import pixel_features
    from models.ssl import to_stamps

    return pixel_features(to_stamps(images, size).numpy())


def _central(images, fraction: float = 1 / 3) -> list[np.ndarray]:
    """The central ``fraction`` of each frame's side (the issue's 140 of 423 px)."""
    out = []
    for im in images:
        h, w = im.shape[:2]
        ch, cw = max(8, round(h * fraction)), max(8, round(w * fraction))
        out.append(im[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw])
    return out


def _load(data: Path, label_col: str, limit: int = 0) -> tuple[list[str], list[np.ndarray], list[str]]:
    from features.embeddings import load_image_file

    with (data / "catalog.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    rows = rows[::max(1, len(rows) // limit)][:limit] if limit else rows  # a spread subset (smoke tests)
    files = {p.stem: p for p in (data / "images").iterdir()}
    return ([r["id"] for r in rows], [load_image_file(files[r["id"]]) for r in rows], [r[label_col] for r in rows])


def _cached(cache: Path | None, key: str, make):
    """``make()`` or its saved result (``<cache>/<key>.npy``): the random ViT's 224 px embeddings take minutes."""
    if cache is None:
        return make()
    path = cache / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    value = make()
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, value)
    return value


def _embed_stamps(stamps: np.ndarray, backbone, size: int) -> np.ndarray:
    """The product's embedding of galaxy stamps that are already cut (``uint8 [N, size, size, 3]``).

    The stamps come from :func:`features.ssl.stamps.galaxy_stamps`, as the product's embedding cuts them
    from the frame, so the spec is told ``stamp="frame"``: with ``"galaxy"`` :func:`embed_images` would cut
    each stamp a second time (a tighter crop, ~0.85 of the side, than the one trained on and stored).
    """
    import dataclasses

    from features.embeddings import ENCODERS, Encoder, embed_images
    from features.weights import WeightsOrigin

    spec = dataclasses.replace(ENCODERS["ssl_resnet18"], stamp="frame")
    return embed_images(stamps, Encoder(spec, backbone, "", WeightsOrigin.SELF_SUPERVISED, size))[0]


DIHEDRAL = tuple((k, flip) for k in range(4) for flip in (False, True))
"""The 8 transforms of the square's symmetry group D4: ``k`` quarter turns, then a left-right flip or not."""


def dihedral(image: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """``image`` (``[H, W, ...]``) turned by ``k`` quarter turns, then flipped left-right when ``flip``."""
    out = np.rot90(image, k, axes=(0, 1))
    return np.ascontiguousarray(out[:, ::-1] if flip else out)


def dihedral_mean(embed, images) -> np.ndarray:
    """The mean of ``embed(images transformed)`` over the 8 transforms of :data:`DIHEDRAL`
    (galaxies have no preferred orientation, Dieleman et al. 2015)."""
    return np.mean([embed([dihedral(im, k, f) for im in images]) for k, f in DIHEDRAL], axis=0)


def stage_pool(stamps: np.ndarray, backbone, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A ResNet's pooled last stage (what :func:`_embed_stamps` gives) and its global-average-pooled
    stages 1-4, each L2-normalised, concatenated (features from more than the last stage); one pass."""
    import torch

    from features.embeddings import preprocess

    last, every = [], []
    with torch.inference_mode():
        for lo in range(0, len(stamps), 64):
            x = preprocess(stamps[lo:lo + 64], size)
            pools = [m.mean(dim=(2, 3)) for m in
                     backbone.forward_intermediates(x, indices=[1, 2, 3, 4], intermediates_only=True)]
            last.append(pools[-1])
            every.append(torch.cat([torch.nn.functional.normalize(v, dim=1) for v in pools], 1))
    return torch.cat(last).numpy(), torch.cat(every).numpy()


def cnn_levers(stamps: np.ndarray, backbone, size: int, levers: list[str]) -> dict[str, np.ndarray]:
    """The embedding variants of ``levers`` (``d8``, ``stages``, ``d8+stages``) by name suffix, sharing passes."""
    out = {}
    if "stages" in levers:
        out["all stages"] = stage_pool(stamps, backbone, size)[1]
    if "d8" in levers or "d8+stages" in levers:
        views = [stage_pool(np.stack([dihedral(im, k, f) for im in stamps]), backbone, size) for k, f in DIHEDRAL]
        if "d8" in levers:
            out["D8 mean"] = np.mean([v[0] for v in views], axis=0)
        if "d8+stages" in levers:
            out["D8 mean of all stages"] = np.mean([v[1] for v in views], axis=0)
    return out


def _pretrain(stamps: np.ndarray, cfg, size: int, seed: int, what: str):
    import torch

    from features.embeddings import ENCODERS
    from models.ssl import train_simclr
    from stages.ssl import new_backbone

    backbone, _ = new_backbone(ENCODERS["ssl_resnet18"], "scratch", seed=seed)
    x = torch.from_numpy(stamps).permute(0, 3, 1, 2).float().div_(255.0)
    print(f"pretraining on {what}: {len(x)} stamps of {size} px", flush=True)
    res = train_simclr(x, backbone, cfg, log=lambda m: print(m, flush=True))
    return backbone, res


def _save_encoder(path: Path, backbone, cfg, size: int, train: dict, extent: float) -> None:
    """The pretrained backbone (safetensors) with its options and training figures in the metadata."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in backbone.state_dict().items()}
    save_file(state, str(path), metadata={"config": json.dumps(cfg.as_dict()), "size": str(size),
                                          "extent": repr(extent), "train": json.dumps(train)})


def _saved_encoder(path: Path):
    """A backbone saved by :func:`_save_encoder` and its metadata, ``extent`` as a float (1.6 in files saved
    before ``--extent`` existed)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from features.embeddings import ENCODERS
    from stages.ssl import new_backbone

    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata())
    meta["extent"] = float(meta.get("extent", "1.6"))
    backbone, _ = new_backbone(ENCODERS["ssl_resnet18"], "scratch")
    backbone.load_state_dict(load_file(str(path)))
    return backbone.eval(), meta


def _load_encoder(path: Path, cfg, size: int, extent: float):
    """A backbone saved by :func:`_save_encoder` with the same options (else a clear one-line error)."""
    backbone, meta = _saved_encoder(path)
    if (json.loads(meta["config"]) != json.loads(json.dumps(cfg.as_dict())) or int(meta["size"]) != size
            or meta["extent"] != extent):
        raise SystemExit(f"{path} was pretrained with other options (size {meta['size']}, extent {meta['extent']}, "
                         f"config {meta['config']})")
    return backbone, json.loads(meta["train"])


def _stamps(cache: Path | None, name: str, images, size: int, extent: float) -> np.ndarray:
    """Galaxy stamps of ``images`` (:func:`features.ssl.stamps.galaxy_stamps`), cached by size and extent."""
    from features.ssl.stamps import galaxy_stamps

    return _cached(cache, f"stamps_{name}_{size}_extent{extent:g}", lambda: galaxy_stamps(images, size, extent)[0])


def _probe_arms(feats: dict[str, np.ndarray], y: np.ndarray, ids: list[str], groups: list[str], seed: int,
                n_boot: int, refs: list[str]) -> tuple[dict, dict, int]:
    """Linear probe balanced accuracy on a grouped split, its CI, and the paired differences ``ref - arm``
    (``{ref: {arm: interval}}``) for every ``ref`` of ``refs``."""
    from models.metrics import balanced_accuracy
    from models.probe import fit_probe
    from models.splits import make_splits

    split = make_splits(ids, y, groups, seed=seed).split
    part = {s: np.flatnonzero(split == s) for s in ("train", "val", "test")}
    yt = y[part["test"]]
    preds = {}
    for name, x in feats.items():
        probe = fit_probe(x[part["train"]], y[part["train"]], x[part["val"]], y[part["val"]],
                          num_classes=int(y.max()) + 1, seed=seed)
        preds[name] = probe.predict_proba(x[part["test"]]).argmax(axis=1)
    boots = stratified_boot(yt, n_boot, seed)
    rows, diffs = {}, {}
    for name, p in preds.items():
        rows[name] = interval([balanced_accuracy(yt[b], p[b]) for b in boots], balanced_accuracy(yt, p))
    for ref in refs:
        q = preds[ref]
        diffs[ref] = {name: interval([balanced_accuracy(yt[b], q[b]) - balanced_accuracy(yt[b], p[b]) for b in boots],
                                     balanced_accuracy(yt, q) - balanced_accuracy(yt, p))
                      for name, p in preds.items() if name != ref}
    return rows, diffs, len(yt)


def part_real(args: argparse.Namespace) -> dict:
    """Every arm on the real rings and GZ1 galaxies, in one run (see the module docstring)."""
    import dataclasses
    import hashlib

    from features.embeddings import ENCODERS, embed_images, load_encoder
    from features.ssl import SSLConfig, ViewConfig
    from models.baselines import pixel_features
    from stages.ssl import new_backbone

    size, ref = args.size, "ssl"
    versus = []  # earlier saved encoders, checked before anything is pretrained
    for other in args.versus:
        o_net, meta = _saved_encoder(Path(other))
        if int(meta["size"]) != size:
            raise SystemExit(f"--versus {other}: pretrained at {meta['size']} px, this run is at {size}")
        versus.append((Path(other), o_net, meta))
    t0 = time.perf_counter()
    r_ids, r_img, r_lab = _load(Path(args.rings), "ring", args.limit)
    g_ids, g_img, g_lab = _load(Path(args.gz1), "gz1_class", args.limit)
    print(f"read {len(r_ids)} rings-sample and {len(g_ids)} GZ1 images in {time.perf_counter() - t0:.0f} s", flush=True)
    t0 = time.perf_counter()
    cache = Path(args.cache) if args.cache else None
    r_st = _stamps(cache, "rings", r_img, size, args.extent)
    g_st = _stamps(cache, "gz1", g_img, size, args.extent)
    stamp_s = time.perf_counter() - t0
    print(f"galaxy stamps in {stamp_s:.0f} s", flush=True)
    views = ViewConfig(**{**dataclasses.asdict(ViewConfig()), "flux_scale": tuple(args.flux_scale),
                          "band_scale": args.band_scale, "scale": tuple(args.zoom)})
    cfg = SSLConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr, temperature=args.temperature,
                    views=views, seed=args.seed)
    out: dict = {"size": size, "extent": args.extent, "config": cfg.as_dict(), "stamp_seconds": stamp_s}
    if args.load_encoder:  # the weights (and training figures) of an earlier run of the same options
        backbone, out["train"] = _load_encoder(Path(args.load_encoder), cfg, size, args.extent)
    else:
        backbone, res = _pretrain(np.concatenate([g_st, r_st]), cfg, size, args.seed, "every image (GZ1 + rings)")
        out["train"] = {"seconds_per_epoch": float(np.mean(res.epoch_seconds)),
                        "images_per_second": res.images_per_second, "losses": res.losses, "n_images": res.n_images}
        if args.save_encoder:
            _save_encoder(Path(args.save_encoder), backbone, cfg, size, out["train"], args.extent)
    feats_r: dict[str, np.ndarray] = {"ssl": _embed_stamps(r_st, backbone, size)}
    feats_g: dict[str, np.ndarray] = {"ssl": _embed_stamps(g_st, backbone, size)}
    if args.transfer:
        tb, tres = _pretrain(g_st, cfg, size, args.seed, "GZ1 only (transfer to the rings)")
        feats_r["ssl, pretrained on GZ1 only"] = _embed_stamps(r_st, tb, size)
        out["train_transfer"] = {"seconds_per_epoch": float(np.mean(tres.epoch_seconds)),
                                 "images_per_second": tres.images_per_second}
    for other, o_net, meta in versus:  # an earlier saved encoder, on stamps cut at its own extent: paired
        label = f"ssl saved {other.name} (extent {meta['extent']:g})"
        feats_r[label] = _embed_stamps(_stamps(cache, "rings", r_img, size, meta["extent"]), o_net, size)
        feats_g[label] = _embed_stamps(_stamps(cache, "gz1", g_img, size, meta["extent"]), o_net, size)
    init, _ = new_backbone(ENCODERS["ssl_resnet18"], "scratch",
                           seed=args.seed)
    feats_r["untrained"] = _embed_stamps(r_st, init, size)
    feats_g["untrained"] = _embed_stamps(g_st, init, size)
    for name, imgs, ids, feats in (("rings", r_img, r_ids, feats_r), ("gz1", g_img, g_ids, feats_g)):
        key = "random_vits14_" + name + "_" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]
        feats["random_vits14"] = _cached(cache, key, lambda imgs=imgs: embed_images(imgs, load_encoder("random_vits14"))[0])
        feats["pixels, whole frame"] = _pixels(imgs)
        feats["pixels, central third"] = _pixels(_central(imgs))
    feats_r["pixels, galaxy stamp"] = pixel_features(r_st.transpose(0, 3, 1, 2))
    feats_g["pixels, galaxy stamp"] = pixel_features(g_st.transpose(0, 3, 1, 2))
    refs = [ref]
    for arm, net in (("ssl", backbone), ("untrained", init)):
        for feats, st in ((feats_r, r_st), (feats_g, g_st)):
            feats.update({f"{arm}, {k}": v for k, v in cnn_levers(st, net, size, args.lever).items()})
    for lever in args.lever:  # embedding variants of the same networks (issue 28: the rings gap)
        refs.append({"d8": "ssl, D8 mean", "stages": "ssl, all stages"}.get(lever, "ssl, D8 mean of all stages"))
        if lever == "d8":  # the random ViT with the same lever (a ViT has no stages to pool)
            vit = load_encoder("random_vits14")
            for name, imgs, ids, feats in (("rings", r_img, r_ids, feats_r), ("gz1", g_img, g_ids, feats_g)):
                key = "random_vits14_d8_" + name + "_" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]
                feats["random_vits14, D8 mean"] = _cached(
                    cache, key, lambda imgs=imgs, vit=vit: dihedral_mean(lambda x, vit=vit: embed_images(x, vit)[0], imgs))
    # labels are read only now, for the evaluation
    ry = np.array([int(v) for v in r_lab])
    keep = np.array([c != "Don't know" for c in g_lab])
    names = sorted({"Spiral" if c.startswith("Spiral") else c for c, k in zip(g_lab, keep) if k})
    gy = np.array([names.index("Spiral" if c.startswith("Spiral") else c) for c, k in zip(g_lab, keep) if k])
    g_keep_ids = [i for i, k in zip(g_ids, keep) if k]
    groups = [hashlib.sha256(np.ascontiguousarray(im).tobytes()).hexdigest() for im, k in zip(g_img, keep) if k]
    out["gz1_classes"] = {n: int((gy == i).sum()) for i, n in enumerate(names)}
    out["gz1_duplicate_images"] = len(groups) - len(set(groups))
    rq = np.flatnonzero(ry == 1)
    rboots = [rq[b] for b in np.random.default_rng(args.seed).integers(0, len(rq), (args.boot, len(rq)))]
    gboots = stratified_boot(gy, args.boot, args.seed)
    per_r = {n: per_query_precision(v, ry, args.k) for n, v in feats_r.items()}
    per_g = {n: per_query_precision(v[keep], gy, args.k) for n, v in feats_g.items()}
    out["rings"] = {n: interval([p[b].mean() for b in rboots], p[rq].mean()) for n, p in per_r.items()}
    out["refs"] = refs
    out["rings_diff"] = {r: {n: interval([per_r[r][b].mean() - p[b].mean() for b in rboots],
                                         per_r[r][rq].mean() - p[rq].mean()) for n, p in per_r.items() if n != r}
                         for r in refs}
    out["gz1"] = {n: interval([class_mean(p, gy, b) for b in gboots], class_mean(p, gy)) for n, p in per_g.items()}
    out["gz1_diff"] = {r: {n: interval([class_mean(per_g[r] - p, gy, b) for b in gboots], class_mean(per_g[r] - p, gy))
                           for n, p in per_g.items() if n != r} for r in refs}
    out["probe"], out["probe_diff"], out["probe_n_test"] = _probe_arms(
        {n: v[keep] for n, v in feats_g.items()}, gy, g_keep_ids, groups, args.seed, args.boot, refs)
    _print_real(out, args)
    return out


def _print_real(out: dict, args: argparse.Namespace) -> None:
    def cell(t: tuple) -> str:
        return f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]"

    def dcell(d: dict, n: str) -> str:
        t = d.get(n)
        return "" if t is None else f"{t[0]:+.3f} [{t[1]:+.3f}, {t[2]:+.3f}]"

    arms = list(dict.fromkeys([*out["rings"], *out["gz1"]]))
    for ref in out["refs"]:
        print(f"\nstamps {out['size']} px, galaxy-centred; GZ1 classes {out['gz1_classes']}, "
              f"probe test {out['probe_n_test']} galaxies; precision@{args.k}; 95% bootstrap CIs "
              f"({args.boot} resamples); diff = {ref!r} minus the arm (paired)\n")
        print("| arm | ring p@10 | ref - arm | GZ1 p@10 (class mean) | ref - arm | GZ1 probe bal. acc. | ref - arm |")
        print("|---|---|---|---|---|---|---|")
        for n in arms:
            r, g, p = out["rings"].get(n), out["gz1"].get(n), out["probe"].get(n)
            print(f"| {n} | {cell(r) if r else ''} | {dcell(out['rings_diff'][ref], n)} | {cell(g) if g else ''} | "
                  f"{dcell(out['gz1_diff'][ref], n)} | {cell(p) if p else ''} | {dcell(out['probe_diff'][ref], n)} |")
    t = out["train"]
    print(f"\nSimCLR on {t['n_images']} stamps: {t['seconds_per_epoch']:.1f} s/epoch, "
          f"{t['images_per_second']:.0f} images/s, loss {t['losses'][0]:.2f} -> {t['losses'][-1]:.2f}")


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
    ap.add_argument("part", choices=("real", "demo"))
    ap.add_argument("--rings", default=str(ROOT.parent / "shared" / "data" / "gz_decals_rings"))
    ap.add_argument("--gz1", default=str(ROOT.parent / "shared" / "data" / "gz1_sdss"))
    from features.ssl.config import SSLConfig, ViewConfig
    from features.ssl.stamps import EXTENT

    cfg, views = SSLConfig(), ViewConfig()
    ap.add_argument("--size", type=int, default=64, help="real: side of the galaxy-centred stamps")
    ap.add_argument("--extent", type=float, default=EXTENT,
                    help="real: stamp half side in segment radii (default: the product's, features.ssl.stamps.EXTENT)")
    ap.add_argument("--epochs", type=int, default=cfg.epochs, help="real: SimCLR epochs (default: the asset's)")
    ap.add_argument("--batch", type=int, default=cfg.batch_size)
    ap.add_argument("--lr", type=float, default=cfg.lr)
    ap.add_argument("--temperature", type=float, default=cfg.temperature)
    ap.add_argument("--zoom", type=float, nargs=2, default=views.scale)
    ap.add_argument("--flux-scale", type=float, nargs=2, default=views.flux_scale)
    ap.add_argument("--band-scale", type=float, default=views.band_scale)
    ap.add_argument("--transfer", action=argparse.BooleanOptionalAction, default=True,
                    help="real: also pretrain on GZ1 only and evaluate on the rings")
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--limit", type=int, default=0, help="real: at most this many galaxies of each set (smoke test)")
    ap.add_argument("--cache", help="real: directory keeping the random ViT's embeddings between runs")
    ap.add_argument("--save-encoder", help="real: write the pretrained encoder here (safetensors)")
    ap.add_argument("--load-encoder", help="real: evaluate this saved encoder (same options) instead of pretraining")
    ap.add_argument("--versus", action="append", default=[], metavar="SAFETENSORS",
                    help="real: also evaluate this encoder saved by --save-encoder (same size; its own stamp extent), "
                         "paired with the others")
    ap.add_argument("--lever", action="append", default=[], choices=("d8", "stages", "d8+stages"),
                    help="real: also evaluate an embedding variant of the SSL and untrained networks (repeatable): "
                         "the mean over the 8 dihedral transforms (random_vits14 too), every stage pooled, or both")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--warehouse", help="demo: an existing demo warehouse (default: run the demo here)")
    ap.add_argument("--n", type=int, default=600, help="demo: galaxies when the demo is run here")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args(argv)
    out = part_real(args) if args.part == "real" else part_demo(args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
