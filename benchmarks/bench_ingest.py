"""Ingest throughput, storage cost and peak memory on a generated Galaxy10-format file.

Usage::

    python benchmarks/bench_ingest.py [--n 5000] [--shard-size 1000] [--out DIR]

Builds a ``Galaxy10_DECals.h5`` of ``--n`` 256x256x3 uint8 images (tiles of the 370 real DECaLS images
in ../shared when present, flipped and rotated, else synthetic blobs on noise), then in separate child
processes, so each peak RSS is its own:

1. ``raw``: read every image from HDF5 in chunks (the floor any ingest pays);
2. ``ingest``: ``register_source`` + the Dagster ``galaxies``/``duplicate_groups`` runs, as the CLI does.

It also compares the image encodings (PNG level 1 / 6, raw .npy) on 500 of the images and times random
reads of one galaxy's image by id. Figures are printed as a Markdown table; the ratio column is against
the raw read measured in the same run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "gz_decals_rings"


def make_file(path: Path, n: int, seed: int = 0) -> str:
    import h5py
    from PIL import Image

    rng = np.random.default_rng(seed)
    if SHARED.is_dir():
        base = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((SHARED / "images").glob("*.png"))]
        kind = f"tiles of {len(base)} real DECaLS images"
    else:
        yy, xx = np.mgrid[:256, :256] - 128
        base = [np.clip(180 * np.exp(-(xx**2 + yy**2) / (2 * s**2))[..., None] + rng.normal(25, 6, (256, 256, 3)),
                        0, 255).astype(np.uint8) for s in rng.uniform(6, 30, 64)]
        kind = "synthetic blobs on noise"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("images", (n, 256, 256, 3), np.uint8, chunks=(1, 256, 256, 3))
        chunk = 500
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            block = np.stack([np.rot90(base[i % len(base)], k=(i // len(base)) % 4) for i in range(s, e)])
            flip = (np.arange(s, e) // (4 * len(base))) % 2 == 1
            block[flip] = block[flip][:, :, ::-1]
            ds[s:e] = block
        f["ans"] = (np.arange(n) % 10).astype(np.uint8)
        f["ra"] = rng.uniform(0, 360, n)
        f["dec"] = np.degrees(np.arcsin(rng.uniform(-0.5, 0.9, n)))
        f["redshift"] = rng.uniform(0.01, 0.15, n)
        f["pxscale"] = np.full(n, 0.262)
    return kind


def child_raw(path: str) -> dict:
    import h5py

    t0 = time.perf_counter()
    total = 0
    with h5py.File(path, "r") as f:
        ds = f["images"]
        for s in range(0, ds.shape[0], 256):
            total += int(ds[s:s + 256].sum(dtype=np.uint64) > 0)
    return {"seconds": time.perf_counter() - t0}


def child_ingest(path: str, home: str, shard_size: int) -> dict:
    from dagster_project.runner import run_pipeline
    from features.sources.galaxy10 import Galaxy10Source
    from stages.sources import register_source
    from warehouse import Warehouse

    wh = Warehouse.open(home)
    t0 = time.perf_counter()
    shards = register_source(wh, Galaxy10Source(path), path=path, shard_size=shard_size)
    report = run_pipeline(wh, shards, groups=["ingest"], progress=False)
    seconds = time.perf_counter() - t0
    assert report.ok, report.failed
    size = sum(p.stat().st_size for p in (wh.lance_dir / "images.lance").rglob("*") if p.is_file())
    size_g = sum(p.stat().st_size for p in (wh.lance_dir / "galaxies.lance").rglob("*") if p.is_file())
    ids = wh.read("galaxies", columns=["galaxy_id"]).column("galaxy_id").to_pylist()
    rng = np.random.default_rng(1)
    wh.read_image(ids[0])  # build the id map once
    t1 = time.perf_counter()
    picks = rng.choice(ids, 200, replace=False)
    for gid in picks:
        wh.read_image(str(gid))
    read_ms = (time.perf_counter() - t1) / len(picks) * 1e3
    return {"seconds": seconds, "images_bytes": size, "galaxies_bytes": size_g, "n": wh.count("galaxies"),
            "random_read_ms": read_ms}


def encodings(path: Path, n: int = 500) -> list[dict]:
    import h5py
    from PIL import Image

    with h5py.File(path, "r") as f:
        imgs = f["images"][:n]
    out = []
    for name, enc, dec in [
        ("png level 1", lambda a: _png(a, 1), lambda b: np.asarray(Image.open(io.BytesIO(b)))),
        ("png level 6", lambda a: _png(a, 6), lambda b: np.asarray(Image.open(io.BytesIO(b)))),
        ("raw npy", _npy, lambda b: np.load(io.BytesIO(b))),
    ]:
        t0 = time.perf_counter()
        blobs = [enc(a) for a in imgs]
        t1 = time.perf_counter()
        for b in blobs:
            dec(b)
        t2 = time.perf_counter()
        out.append({"encoding": name, "kb_per_image": np.mean([len(b) for b in blobs]) / 1024,
                    "encode_ms": (t1 - t0) / n * 1e3, "decode_ms": (t2 - t1) / n * 1e3})
    return out


def _png(a: np.ndarray, level: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                          env={**os.environ, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"})
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--shard-size", type=int, default=1000)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", nargs="+")
    args = ap.parse_args()
    if args.child:
        what, *rest = args.child
        res = child_raw(rest[0]) if what == "raw" else child_ingest(rest[0], rest[1], int(rest[2]))
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        return
    work = Path(args.out or tempfile.mkdtemp(prefix="astrovision-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    h5 = work / "Galaxy10_DECals.h5"
    kind = make_file(h5, args.n)
    raw = run_child("raw", str(h5))
    ing = run_child("ingest", str(h5), str(work / "home"), str(args.shard_size))
    n = ing["n"]
    print(f"\n{args.n} images ({kind}), shard size {args.shard_size}, {os.cpu_count()} cores\n")
    print("| step | seconds | galaxies/s | ratio to raw read | peak RSS (MB) |")
    print("|---|---|---|---|---|")
    for name, r in (("raw HDF5 read", raw), ("ingest (Dagster galaxies + duplicate_groups)", ing)):
        print(f"| {name} | {r['seconds']:.1f} | {n / r['seconds']:.0f} | {r['seconds'] / raw['seconds']:.1f}x "
              f"| {r['peak_rss_mb']:.0f} |")
    full = ing["seconds"] / n * 17736
    print(f"\nwarehouse bytes per galaxy: images {ing['images_bytes'] / n / 1024:.1f} KiB, "
          f"galaxies {ing['galaxies_bytes'] / n:.0f} B (raw array 192 KiB)")
    print(f"random read of one image by id: {ing['random_read_ms']:.2f} ms")
    print(f"extrapolated full Galaxy10 (17,736) ingest: {full / 60:.1f} min\n")
    print("| encoding | KiB/image | encode ms | decode ms |")
    print("|---|---|---|---|")
    for e in encodings(h5):
        print(f"| {e['encoding']} | {e['kb_per_image']:.1f} | {e['encode_ms']:.2f} | {e['decode_ms']:.2f} |")


if __name__ == "__main__":
    main()
