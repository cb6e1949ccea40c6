"""Analysis time at 600 / 10,000 / 100,000 embeddings, and what UMAP's subsample rule costs.

Seeded synthetic embeddings (``clusters`` Gaussian blobs in ``dim`` dimensions on a low-dimensional
manifold, the structure survey embeddings have) and twelve quantities (each a noisy function of a few
latent coordinates). For each ``n`` it times, in the same process and after a warm-up UMAP fit (numba
compiles once per process):

- PCA (10 components) of the vectors;
- UMAP fitted on every vector (when ``n <= --full-max``) and with the subsample rule
  (fit on ``--max-fit`` seeded vectors, the rest placed by ``transform``), each with its k-NN (k = 10)
  preservation against the original vectors on 1,000 query points;
- the statistics of ``representation_analysis``, per test: Spearman rho of a PC with a quantity with
  1,000 bootstrap resamples and 1,000 permutations (mean of ``--tests`` tests), and grouped 5-fold
  ridge R^2 of a quantity from the vectors with 1,000 bootstrap resamples; the asset runs
  5 PCs x 12 quantities = 60 rho tests and 12 R^2 per encoder (plus the pixel baseline's 12).

Usage::

    .venv/bin/python benchmarks/bench_analysis.py --n 600 10000 100000 --max-fit 5000

Prints a markdown table (docs/benchmarks_analysis.md): wall seconds, and the process's CPU seconds
(all threads) for the whole row, since a shared machine's wall clock says more about its load.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.representation import (
    grouped_cv_r2,
    neighbourhood_preservation,
    pca_map,
    spearman_ci,
    umap_map,
)


def synthetic(n: int, dim: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectors ``(n, dim)`` on a 6-D latent manifold in ``clusters`` blobs, and 12 quantities ``(n, 12)``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (clusters, 6))
    z = centres[rng.integers(0, clusters, n)] + rng.normal(0, 1, (n, 6))
    mix = rng.normal(0, 1, (6, dim)) / np.sqrt(6)
    x = np.tanh(z @ mix) + rng.normal(0, 0.1, (n, dim))
    w = rng.normal(0, 1, (6, 12))
    q = z @ w + rng.normal(0, 1, (n, 12))
    return x.astype(np.float32), q


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[600, 10_000, 100_000])
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--clusters", type=int, default=10)
    ap.add_argument("--max-fit", type=int, default=5_000, help="UMAP subsample size of the rule")
    ap.add_argument("--full-max", type=int, default=20_000, help="largest n fitted by UMAP on every vector")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tests", type=int, default=3, help="rho tests and R^2 fits timed per n")
    args = ap.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, dim {args.dim}", flush=True)
    t = time.perf_counter()
    umap_map(np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32), n_neighbors=10)
    print(f"# warm-up UMAP (numba compile) {time.perf_counter() - t:.1f} s", flush=True)
    print("| n | PCA s | UMAP full s | kNN10 kept (full) | UMAP rule s | fitted | kNN10 kept (rule) "
          "| Spearman s / test | CV R^2 s / quantity | analysis s (60 rho + 12 R^2) | row CPU s / wall s |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for n in args.n:
        x, q = synthetic(n, args.dim, args.clusters, args.seed)
        c0, w0 = time.process_time(), time.perf_counter()
        t = time.perf_counter()
        pm = pca_map(x, 10)
        t_pca = time.perf_counter() - t
        full = ("-", "-")
        if n <= args.full_max:
            t = time.perf_counter()
            um = umap_map(x, seed=args.seed, max_fit=n)
            full = (f"{time.perf_counter() - t:.1f}", f"{neighbourhood_preservation(x, um.coords):.3f}")
        rule = ("-", "-", "-")
        if n > args.max_fit:
            t = time.perf_counter()
            us = umap_map(x, seed=args.seed, max_fit=args.max_fit)
            rule = (f"{time.perf_counter() - t:.1f}", f"{int(us.fitted.sum())}",
                    f"{neighbourhood_preservation(x, us.coords):.3f}")
        t = time.perf_counter()
        for k in range(args.tests):
            spearman_ci(pm.coords[:, k % 5], q[:, k])
        t_rho = (time.perf_counter() - t) / args.tests
        t = time.perf_counter()
        groups = np.arange(n) // 2
        for k in range(args.tests):
            grouped_cv_r2({"x": x}, q[:, k], groups)
        t_r2 = (time.perf_counter() - t) / args.tests
        print(f"| {n:,} | {t_pca:.1f} | {full[0]} | {full[1]} | {rule[0]} | {rule[1]} | {rule[2]} "
              f"| {t_rho:.2f} | {t_r2:.2f} | {60 * t_rho + 12 * t_r2:.0f} "
              f"| {time.process_time() - c0:.0f} / {time.perf_counter() - w0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
