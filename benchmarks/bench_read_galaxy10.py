"""Read throughput and peak memory of Galaxy10Source against plain h5py on a generated Galaxy10 file.

Writes a ``Galaxy10_DECals.h5`` of N images (the real keys, dtypes and 256 x 256 x 3 shape, contiguous
uncompressed ``images`` like the published file) into a temporary directory, reads it once to put it in
the page cache, then measures each mode in a fresh subprocess (so ``ru_maxrss`` is that mode's own peak):

- ``h5py reads``: ``f["images"][a:a + batch_size]`` over the file (the baseline: the same reads with
  nothing else done);
- ``Galaxy10Source``: ``validate()`` then ``iter_batches()`` over every row (what ingest calls);
- ``h5py whole``: ``f["images"][:]`` (what a naive loader does; peak memory grows with the file);
- ``imports only``: the interpreter with numpy, h5py and the source imported.

Peak memory is VmHWM; the last column subtracts the peak reached after the imports.

Usage::

    .venv/bin/python benchmarks/bench_read_galaxy10.py --n 5000 [--out table.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHAPE = (256, 256, 3)


def generate(path: Path, n: int, seed: int = 0, block: int = 256) -> None:
    """Write a Galaxy10-format file of ``n`` images in blocks (bounded memory)."""
    import h5py

    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, (block, *SHAPE), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("images", shape=(n, *SHAPE), dtype=np.uint8)
        for a in range(0, n, block):
            b = min(a + block, n)
            ds[a:b] = np.roll(pool, a % 7, axis=1)[: b - a]
        f.create_dataset("ans", data=rng.integers(0, 10, n).astype(np.uint8))
        f.create_dataset("ra", data=rng.uniform(0, 360, n))
        f.create_dataset("dec", data=rng.uniform(-30, 60, n))
        f.create_dataset("redshift", data=rng.uniform(0.01, 0.3, n))
        f.create_dataset("pxscale", data=np.full(n, 0.262))


def _child(mode: str, path: str, chunk: int, batch: int) -> dict:
    """Run one mode in this process and report wall time, images and peak RSS."""
    import h5py

    from features.sources.galaxy10 import Galaxy10Source

    base_mb = _peak_rss_mb()  # after imports
    t0 = time.perf_counter()
    n_img, checksum = 0, 0
    if mode == "h5py reads":
        with h5py.File(path, "r") as f:
            ds = f["images"]
            for a in range(0, ds.shape[0], batch):
                block = ds[a:a + batch]
                n_img += len(block)
                checksum += int(block[:, 128, 128, 0].sum())
    elif mode == "Galaxy10Source":
        src = Galaxy10Source(path, chunk_size=chunk)
        src.validate()
        for b in src.iter_batches(batch_size=batch):
            n_img += len(b)
            checksum += int(sum(int(im[128, 128, 0]) for im in b.images))
    elif mode == "h5py whole":
        with h5py.File(path, "r") as f:
            block = f["images"][:]
            n_img = len(block)
            checksum = int(block[:, 128, 128, 0].sum())
    elif mode != "imports only":
        raise ValueError(mode)
    wall = time.perf_counter() - t0
    return {"mode": mode, "wall_s": wall, "images": n_img, "peak_mb": _peak_rss_mb(), "base_mb": base_mb,
            "checksum": checksum}


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Unlike ``getrusage().ru_maxrss``, it is not inherited
    from the parent across fork + exec."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def run_mode(mode: str, path: Path, chunk: int, batch: int) -> dict:
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "from benchmarks.bench_read_galaxy10 import _child;"
        "print(json.dumps(_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), mode, str(path), str(chunk), str(batch)],
                         check=True, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="images in the generated file")
    ap.add_argument("--chunk-size", type=int, default=256, help="Galaxy10Source chunk_size")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--dir", type=Path, help="where to write the file (default: a temporary directory)")
    ap.add_argument("--out", type=Path, help="also write the markdown table here")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "Galaxy10_DECals.h5"
        t0 = time.perf_counter()
        generate(path, args.n)
        gen_s = time.perf_counter() - t0
        size_mb = path.stat().st_size / 2**20
        with open(path, "rb") as fh:  # warm the page cache so every mode reads from memory
            while fh.read(1 << 24):
                pass
        modes = ["imports only", "h5py reads", "Galaxy10Source", "h5py whole", "h5py reads", "Galaxy10Source"]
        results = [run_mode(m, path, args.chunk_size, args.batch_size) for m in modes]

    raw = min(r["wall_s"] for r in results if r["mode"] == "h5py reads")
    sums = {r["checksum"] for r in results[1:]}
    lines = [
        f"Generated file: {args.n} images, {size_mb:.0f} MiB (written in {gen_s:.1f} s); chunk_size "
        f"{args.chunk_size}, batch_size {args.batch_size}; page cache warm; pixel checksums agree: "
        f"{len(sums) == 1}.",
        "",
        "| mode | wall s | images/s | time / h5py reads | peak RSS MiB | peak above imports MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rate = f"{r['images'] / r['wall_s']:.0f}" if r["images"] else "-"
        ratio = f"{r['wall_s'] / raw:.2f}" if r["images"] else "-"
        lines.append(f"| {r['mode']} | {r['wall_s']:.2f} | {rate} | {ratio} | {r['peak_mb']:.0f} | "
                     f"{r['peak_mb'] - r['base_mb']:.0f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
