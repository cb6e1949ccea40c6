"""Segmentation benchmark: U-Net vs Otsu against the demo's true masks, speed, and real ring galaxies.

1. A demo survey of ``--n`` galaxies (256 px) in a temporary warehouse, through the real Dagster runs of
   ``galaxies``, ``splits``, ``pseudo_labels``, ``unet`` and ``masks``: the IoU / Dice table per class
   (test split) from the registry's gate, the seconds of each stage, training seconds per epoch and
   inference galaxies/s (torch on ``--threads`` threads).
2. The 370 real Galaxy Zoo DECaLS ring galaxies (``../shared/data/gz_decals_rings``) ingested into the
   same warehouse; their pseudo-labels and the demo-trained U-Net's masks: the share of galaxies whose
   mask covers the stamp centre (U-Net and Otsu) and the U-Net-vs-Otsu IoU (agreement: no truth here).
3. Montages: per demo class (image, Otsu, U-Net, truth) and a dozen rings (image, Otsu, U-Net) in
   ``docs/img/`` (``--img-dir``).

    PYTHONPATH=. python benchmarks/bench_segmentation.py [--n 2000] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RINGS = ROOT.parent / "shared" / "data" / "gz_decals_rings"


def _run(wh, shards, assets, config=None):
    from dagster_project.runner import run_pipeline

    t0 = time.perf_counter()
    report = run_pipeline(wh, shards, assets=assets, run_config=config, progress=False, log=lambda m: None)
    if report.failed:
        raise SystemExit(f"failed: {report.failed}")
    return report, time.perf_counter() - t0


def _ring_montage(wh, ids, out: Path) -> None:
    from features.pixels import model_input_uint8
    from features.segmentation import montage_png, overlay_outline
    from stages.segmentation import read_labels, stored_mask

    otsu, _ = read_labels(wh, ids)
    rows = []
    for gid, o in zip(ids, otsu):
        stamp = model_input_uint8(wh.read_image(gid))
        rows.append((gid.split(":")[1][:17], [stamp, overlay_outline(stamp, o), overlay_outline(stamp, stored_mask(wh, gid)[0])]))
    out.write_bytes(montage_png(rows, ["image", "Otsu", "U-Net"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="demo galaxies")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--img-dir", default=str(ROOT / "docs" / "img"))
    ap.add_argument("--json", help="also write the numbers here")
    ap.add_argument("--keep", help="warehouse directory to keep (default: a temporary one)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from features.sources.folder import FolderSource
    from features.sources.synthetic import SyntheticSurvey
    from stages.sources import register_source
    from warehouse import Warehouse

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-seg-"))
    wh = Warehouse.open(root / "wh")
    out: dict = {"n": args.n, "threads": args.threads}
    shards = register_source(wh, SyntheticSurvey(n=args.n, seed=0, size=256), shard_size=500)
    _, out["ingest_s"] = _run(wh, shards, ["galaxies", "duplicate_groups", "splits"])
    rep, out["pseudo_labels_s"] = _run(wh, [], ["pseudo_labels"])
    out["pseudo_labels_ms_per_galaxy"] = rep.metadata["pseudo_labels"]["per_galaxy_ms"]
    rep, out["unet_s"] = _run(wh, [], ["unet"], {"ops": {"unet": {"config": {"epochs": args.epochs}}}})
    meta = rep.metadata["unet"]
    out.update({k: meta[k] for k in ("train_seconds", "seconds_per_epoch", "best_epoch", "n_train", "n_val", "n_test",
                                     "inference_galaxies_per_s", "gate_passed", "gate")})
    rep, out["masks_s"] = _run(wh, [], ["masks"])
    out["masks_galaxies_per_s_inference"] = rep.metadata["masks"]["inference_galaxies_per_s"]
    row = [r for r in wh.read("models").to_pylist() if r["name"] == "unet"][-1]
    gate = json.loads(row["gate_json"])
    out["scores"] = {k: gate[k] for k in ("overall", "all_galaxies", "per_class", "iou_difference")}
    img = Path(args.img_dir)
    img.mkdir(parents=True, exist_ok=True)
    (img / "segmentation_demo_montage.png").write_bytes(Path(row["artefact_path"], "montage.png").read_bytes())

    if RINGS.is_dir():
        shards = register_source(wh, FolderSource(RINGS), path=str(RINGS))
        _run(wh, shards, ["galaxies"])
        _, out["rings_pseudo_labels_s"] = _run(wh, [], ["pseudo_labels"])
        _, out["rings_masks_s"] = _run(wh, [], ["masks"])
        r = wh.sql("SELECT count(*) AS n, avg(covers_centre::INT) AS unet_centre, avg(iou_otsu) AS iou_otsu, "
                   "median(iou_otsu) AS iou_otsu_median FROM galaxy_masks WHERE galaxy_id LIKE 'gz_decals_rings:%'"
                   ).to_dicts()[0]
        labels = wh.read("pseudo_labels", columns=["galaxy_id", "mask_png", "flags"],
                         where="galaxy_id LIKE 'gz_decals_rings:%'").to_pydict()
        from features.segmentation.otsu import FAILED
        from warehouse.images import decode_image

        centre = [decode_image("png", b)[128, 128] > 0 for b in labels["mask_png"]]
        failed = [bool(f & FAILED) for f in labels["flags"]]
        r.update({"otsu_centre": float(np.mean(centre)), "otsu_failed": int(np.sum(failed))})
        out["rings"] = r
        ids = sorted(labels["galaxy_id"])[::max(1, len(labels["galaxy_id"]) // 12)][:12]
        _ring_montage(wh, ids, img / "segmentation_rings_montage.png")
    print(json.dumps(out, indent=2, default=float))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
