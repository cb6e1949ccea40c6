"""Do ring galaxies find rings? kNN purity on the 370 real GZ DECaLS galaxies of ``../shared/data``.

For every ring galaxy, the fraction of its 10 nearest neighbours (cosine distance on the stored
vector, itself excluded) that are rings; averaged over the 185 rings. Chance is the ring fraction
among the other galaxies, 184/369 = 0.499. Also reported: the same for non-rings, and for the
mean patch token.

With the ``random_vits14`` baseline (no pretrained weights on the machine) the result is expected
near chance; with DINOv2 weights, run::

    .venv/bin/python benchmarks/ring_neighbours.py --encoder dinov2_vits14 --weights PATH/model.safetensors

The embedding goes through the same code as the warehouse (``features.embeddings.embed_images``);
the neighbours are exact, computed here with numpy.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def knn_purity(vectors: np.ndarray, labels: np.ndarray, k: int = 10) -> tuple[float, float]:
    """Mean fraction of same-label galaxies among the k nearest (self excluded), for label 1 and label 0."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    dist = 1.0 - unit @ unit.T
    np.fill_diagonal(dist, np.inf)
    nn = np.argsort(dist, axis=1, kind="stable")[:, :k]
    same = labels[nn] == labels[:, None]
    return float(same[labels == 1].mean()), float(same[labels == 0].mean())


def main(argv: list[str] | None = None) -> int:
    from features.embeddings import embed_images, load_encoder, load_image_file

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "gz_decals_rings"))
    ap.add_argument("--encoder", default="random_vits14")
    ap.add_argument("--weights")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args(argv)

    data = Path(args.data)
    with (data / "catalog.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    images = [load_image_file(data / "images" / f"{r['id']}.png") for r in rows]
    labels = np.array([int(r["ring"]) for r in rows])
    enc = load_encoder(args.encoder, args.weights)
    t0 = time.perf_counter()
    cls, pmean = embed_images(images, enc, batch_size=args.batch_size)
    elapsed = time.perf_counter() - t0
    n1 = int(labels.sum())
    chance_ring = (n1 - 1) / (len(labels) - 1)
    chance_other = (len(labels) - n1 - 1) / (len(labels) - 1)
    print(f"\n{len(labels)} galaxies ({n1} rings), encoder {enc.name} ({enc.weights_origin} weights, sha256 "
          f"{enc.weights_sha256[:12]}), embedded in {elapsed:.0f} s; k = {args.k}\n")
    print(f"| vector | rings among a ring's {args.k} NN | chance | non-rings among a non-ring's {args.k} NN | chance |")
    print("|---|---|---|---|---|")
    for name, vec in (("CLS (searched)", cls), ("patch mean", pmean)):
        ring, other = knn_purity(vec, labels, args.k)
        print(f"| {name} | {ring:.3f} | {chance_ring:.3f} | {other:.3f} | {chance_other:.3f} |")
    if enc.weights_origin.is_random:
        print("\nRandom weights: a baseline; neighbours are expected near chance. Use DINOv2 weights for the real test.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
