"""Benchmark of the training stage; prints Markdown tables for ``docs/benchmarks_training.md``.

1. **Demo survey**: ingest the synthetic survey (``--n`` galaxies) and its embeddings through the Dagster
   pipeline, then train every model with the ``demo`` preset: test balanced accuracy, accuracy, macro F1,
   per-class recall, training time, throughput and the share of step time spent waiting on data.
2. **Data loading**: the training loader alone (cold: PNG decode from Lance; warm: cached stamps) against
   the CNN's training step throughput measured in the same run, and the data-wait share with 0 and 1
   loader workers.
3. **Fine-tune throughput on a GPU** (``--gpu``; needs CUDA): DINOv2 ViT-S/14 and ViT-B/14 fine-tune steps
   (224 px, batch 32, bf16 autocast, layer-wise decay groups) on random tensors, images per second and
   peak memory; random weights, since throughput does not depend on them.
4. **Ring probe** on the 370 real GZ DECaLS galaxies: nested 5-fold cross-validated balanced accuracy of
   the probe on stored embeddings (the encoder the embeddings stage could load: DINOv2 when its
   weights resolve, else the random-weights baseline), against a probe on 16x16 grey pixels and chance.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_training.py --home /tmp/bench-training
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from models.config import make_config
from stages.training import train_model

ORDER = ("dinov2_probe", "cnn", "efficientnet_b0", "dinov2_finetune")


def _ingest(wh, source, path: str | None = None, groups=("ingest", "embeddings")) -> None:
    from dagster_project.runner import run_pipeline
    from stages.sources import register_source

    shards = register_source(wh, source, path=path)
    report = run_pipeline(wh, shards, groups=list(groups), progress=False, log=print)
    if not report.ok:
        raise SystemExit(f"ingest failed: {report.failed}")


def demo_models(home: Path, n: int, train: bool = True) -> tuple[list[str], object]:
    from features.sources.synthetic import SyntheticSurvey
    from warehouse import Warehouse

    wh = Warehouse.open(home / "demo")
    if not wh.exists("galaxies"):
        t0 = time.perf_counter()
        _ingest(wh, SyntheticSurvey(n=n, seed=0))
        print(f"demo ingest + embeddings: {time.perf_counter() - t0:.1f} s")
    if not train:
        return [], wh
    rows = ["| model | weights | test bal. acc. | accuracy | macro F1 | train s | images/s | data wait |",
            "|---|---|---|---|---|---|---|---|"]
    recalls = ["| model | " + " | ".join(["per-class recall (test)"]) + " |", "|---|---|"]
    total = 0.0
    for name in ORDER:
        out = train_model(wh, name, make_config(name), log=lambda m: print("   ", m))
        m = out.metrics
        total += out.train_seconds
        ips = f"{out.fit['images_per_s']:.0f}" if "images_per_s" in out.fit else "-"
        wait = f"{100 * out.fit['data_wait_fraction']:.1f}%" if "data_wait_fraction" in out.fit else "-"
        rows.append(f"| {name} v{out.version} | {out.weights_origin} | {m['balanced_accuracy']:.3f} | "
                    f"{m['accuracy']:.3f} | {m['macro_f1']:.3f} | {out.train_seconds:.1f} | {ips} | {wait} |")
        recalls.append(f"| {name} | " + ", ".join(f"{k} {v:.2f}" for k, v in m["per_class_recall"].items()) + " |")
    split = out.n
    head = [f"Demo survey: {n} galaxies, split train/val/test {split['train']}/{split['val']}/{split['test']}, "
            f"10 classes (chance balanced accuracy 0.100); all four models trained in {total:.0f} s.", ""]
    return head + rows + [""] + recalls, wh


def data_loading(wh) -> list[str]:
    from models.data import GalaxyImageDataset, make_loader
    from models.fit import FitConfig, fit
    from models.registry import build_model
    from stages.training import load_split

    split = load_split(wh, "label-s0-f70.15.15")
    ids, y = split.ids["train"], split.y["train"]
    out = ["| measurement | images/s | data wait | ratio to CNN step |", "|---|---|---|---|"]
    ds = GalaxyImageDataset(wh, ids, y, img_size=64)
    loader = make_loader(ds, batch_size=32, shuffle=True)
    rates = {}
    for label in ("loader only, cold (decode from Lance)", "loader only, warm (cached stamps)"):
        t0 = time.perf_counter()
        n = sum(len(b[1]) for b in loader)
        rates[label] = n / (time.perf_counter() - t0)
    steps = {}
    for workers in (0, 1):
        cfg = make_config("cnn")
        torch.manual_seed(0)
        model, _ = build_model("cnn", split.num_classes, cfg)
        ds_w = GalaxyImageDataset(wh, ids, y, img_size=64)
        tl = make_loader(ds_w, batch_size=32, shuffle=True, num_workers=workers)
        vl = make_loader(GalaxyImageDataset(wh, split.ids["val"], split.y["val"], img_size=64), batch_size=64,
                         shuffle=False)
        res = fit(model, tl, vl, FitConfig(epochs=2, lr=2e-3, bn_recalibration_batches=0), seed=0,
                  num_classes=split.num_classes)
        steps[workers] = res
    base = steps[0].images_per_s
    for label, r in rates.items():
        out.append(f"| {label} | {r:.0f} | - | {r / base:.1f}x |")
    for workers, res in steps.items():
        out.append(f"| CNN training step (64 px, batch 32), {workers} loader worker(s) | {res.images_per_s:.0f} | "
                   f"{100 * res.data_wait_fraction:.1f}% | {res.images_per_s / base:.2f}x |")
    return out


def ring_probe(home: Path, rings: Path) -> list[str]:
    from features.sources.folder import FolderSource
    from models.probe import cross_validate_probe
    from stages.training import resolve_encoder
    from warehouse import Warehouse
    from warehouse.schemas.embeddings import embedding_table as embeddings_table

    wh = Warehouse.open(home / "rings")
    if not wh.exists("galaxies"):
        t0 = time.perf_counter()
        _ingest(wh, FolderSource(rings), path=str(rings))
        print(f"rings ingest + embeddings: {time.perf_counter() - t0:.1f} s")
    enc = resolve_encoder(wh, "auto")
    table = embeddings_table(enc)
    gal = wh.read("galaxies", columns=["galaxy_id", "extra_json", "duplicate_group"]).to_pylist()
    ids = [g["galaxy_id"] for g in gal]
    y = np.array([json.loads(g["extra_json"])["ring"] for g in gal])
    groups = [g["duplicate_group"] or g["galaxy_id"] for g in gal]
    emb = wh.take(table, ids, columns=["vector", "patch_mean", "weights_origin"])
    x = np.concatenate([np.stack(emb.column(c).to_numpy(zero_copy_only=False)) for c in ("vector", "patch_mean")], 1)
    origin = sorted(set(emb.column("weights_origin").to_pylist()))
    images = wh.read_images(ids)
    from PIL import Image

    pix = np.stack([np.asarray(Image.fromarray(im).convert("L").resize((16, 16), Image.BILINEAR), dtype=np.float32)
                    .ravel() for im in images])
    res = {}
    for label, feats in ((f"{table} (CLS + patch mean, {x.shape[1]}-D), weights: {', '.join(origin)}", x),
                         ("baseline: 16x16 grey pixels (256-D)", pix)):
        t0 = time.perf_counter()
        res[label] = (cross_validate_probe(feats, y, groups, n_splits=5, seed=0), time.perf_counter() - t0)
    out = [f"Ring probe on the {len(y)} real GZ DECaLS galaxies ({int(y.sum())} rings); nested 5-fold CV "
           "(C chosen on an inner validation fold), chance 0.500.", "",
           "| features | CV balanced accuracy | per fold | chosen C | seconds |", "|---|---|---|---|---|"]
    for label, (r, s) in res.items():
        out.append(f"| {label} | {r['balanced_accuracy']:.3f} ± {r['std']:.3f} | "
                   f"{', '.join(f'{v:.2f}' for v in r['folds'])} | {', '.join(f'{c:g}' for c in r['C'])} | {s:.1f} |")
    return out


def gpu_finetune(steps: int = 30, batch: int = 32, img_size: int = 224) -> list[str]:
    from models.fit import _autocast
    from models.registry import build_model

    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device")
    dev = torch.device("cuda")
    out = [f"DINOv2 fine-tune steps on {torch.cuda.get_device_name(0)}, {img_size} px, batch {batch}, bf16 autocast.",
           "", "| encoder | images/s | peak memory GiB |", "|---|---|---|"]
    for enc in ("dinov2_vits14", "dinov2_vitb14"):
        cfg = make_config("dinov2_finetune", preset="full", encoder=enc, img_size=img_size, allow_random_init=True)
        model, _ = build_model("dinov2_finetune", 10, cfg, pretrained=False)
        model.to(dev).train()
        opt = torch.optim.AdamW(model.param_groups(cfg.lr, cfg.weight_decay, cfg.layer_decay, cfg.head_lr_scale))
        x = torch.randn(batch, 3, img_size, img_size, device=dev)
        y = torch.randint(0, 10, (batch,), device=dev)
        torch.cuda.reset_peak_memory_stats()
        for i in range(steps + 5):
            if i == 5:
                torch.cuda.synchronize()
                t0 = time.perf_counter()
            with _autocast(dev, True):
                loss = torch.nn.functional.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        rate = steps * batch / (time.perf_counter() - t0)
        out.append(f"| {enc} | {rate:.0f} | {torch.cuda.max_memory_allocated() / 2**30:.1f} |")
        del model, opt
        torch.cuda.empty_cache()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", type=Path, default=Path("/tmp/astrovision-bench-training"))
    p.add_argument("--n", type=int, default=600, help="demo survey size")
    p.add_argument("--rings", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/gz_decals_rings")
    p.add_argument("--skip-demo", action="store_true")
    p.add_argument("--skip-rings", action="store_true")
    p.add_argument("--skip-train", action="store_true", help="demo: only the data-loading measurements")
    p.add_argument("--gpu", action="store_true", help="only the GPU fine-tune throughput")
    p.add_argument("--out", type=Path, default=None, help="also write the tables to this file")
    args = p.parse_args()
    lines = [f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads, CUDA {'yes' if torch.cuda.is_available() else 'no'}.", ""]
    if args.gpu:
        lines += ["## Fine-tune throughput (GPU)", "", *gpu_finetune()]
        args.skip_demo = args.skip_rings = True
    if not args.skip_demo:
        demo, wh = demo_models(args.home, args.n, train=not args.skip_train)
        if demo:
            lines += ["## Demo survey", "", *demo, ""]
            print("\n".join(demo), flush=True)
        loading = data_loading(wh)
        print("\n".join(loading), flush=True)
        lines += ["## Data loading (demo survey, train split)", "", *loading]
    if not args.skip_rings:
        lines += ["", "## Ring probe (real galaxies)", "", *ring_probe(args.home, args.rings)]
    lines += ["", f"Load average at the end (1/5/15 min): {', '.join(f'{v:.1f}' for v in os.getloadavg())} "
              f"on {os.cpu_count()} cores."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
