"""Embedding throughput: the full pipeline against the bare timm forward pass, in the same run.

Both sides use the same encoder, batch size, threads and device. The bare side feeds an already
preprocessed ``[B, 3, 224, 224]`` tensor to ``model.forward_features`` under ``torch.inference_mode``;
the pipeline side is :func:`features.embeddings.embed_images` on uint8 ``256 x 256 x 3`` stamps
(conversion, antialiased resize, normalisation, CLS + patch mean, copies to numpy). With ``--warehouse``
the pipeline also reads and decodes the PNG stamps from a warehouse and upserts the vectors
(:func:`stages.embeddings.embed_shard`). Overhead = pipeline time / bare time - 1.

Usage::

    .venv/bin/python benchmarks/bench_embed.py --n 128 --batch-size 32 [--encoder random_vits14] [--warehouse]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    import torch

    from features.embeddings import embed_images, load_encoder, preprocess

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--encoder", default="random_vits14")
    ap.add_argument("--weights")
    ap.add_argument("--repeats", type=int, default=3, help="alternating timed rounds; the best of each is kept")
    ap.add_argument("--warehouse", action="store_true", help="also time read + decode + embed + upsert")
    args = ap.parse_args(argv)

    enc = load_encoder(args.encoder, args.weights)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cores = len(os.sched_getaffinity(0))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.n, 256, 256, 3), dtype=np.uint8)
    batches = [preprocess(images[i:i + args.batch_size], enc.img_size) for i in range(0, args.n, args.batch_size)]
    model = enc.model.to(device)
    torch.set_num_threads(cores)

    def bare() -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            for x in batches:
                model.forward_features(x.to(device))
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    def pipeline() -> float:
        t = time.perf_counter()
        embed_images(images, enc, batch_size=args.batch_size, device=device)
        return time.perf_counter() - t

    wh = None
    if args.warehouse:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from test_embeddings import write_tiny_shard  # the tests' direct-write helper

        from stages.embeddings import embed_shard
        from warehouse import Warehouse

        wh = Warehouse.open(tempfile.mkdtemp(prefix="bench_embed_"))
        write_tiny_shard(wh, n=args.n, size=256)

        def stored() -> float:
            t = time.perf_counter()
            embed_shard(wh, "demo-00000", enc, batch_size=args.batch_size)
            return time.perf_counter() - t

    bare()  # warm-up (allocator, oneDNN kernels)
    t_bare, t_pipe, t_wh = [], [], []
    for _ in range(args.repeats):
        t_bare.append(bare())
        t_pipe.append(pipeline())
        if wh is not None:
            t_wh.append(stored())
    b, p = min(t_bare), min(t_pipe)
    print(f"\n{args.encoder} ({enc.weights_origin} weights), {args.n} stamps 256x256 -> {enc.img_size}, "
          f"batch {args.batch_size}, {device}, {cores} cores, best of {args.repeats}\n")
    print("| path | seconds | images/s | overhead vs bare forward |")
    print("|---|---|---|---|")
    print(f"| bare timm forward_features | {b:.2f} | {args.n / b:.1f} | - |")
    print(f"| embed_images (preprocess + forward + CLS/patch mean) | {p:.2f} | {args.n / p:.1f} | {p / b - 1:+.1%} |")
    if t_wh:
        w = min(t_wh)
        print(f"| embed_shard (read PNGs + embed + upsert) | {w:.2f} | {args.n / w:.1f} | {w / b - 1:+.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
