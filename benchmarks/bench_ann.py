"""ANN vs exact vector search on clustered synthetic embeddings (nothing is stored in git).

Generates ``n`` seeded vectors in ``clusters`` Gaussian blobs (the structure of survey embeddings),
writes them to an embeddings table of a temporary warehouse, and measures, in the same run:

- exact search with numpy (normalised matrix, one matrix-vector product per query): the baseline;
- exact (flat) search through LanceDB on the same table;
- the ANN index of :func:`warehouse.search.build_index` for each index type: build time, index size,
  and recall@10 against the numpy truth with p50/p99 single-query latency for each (nprobes,
  refine_factor) pair, through :func:`warehouse.search.knn` (the code path ``similar`` uses);
- filtered search (``where`` allowing 1 %, 10 %, 50 % of the table), with the last index built: exact
  numpy over the allowed subset (Lance ``take``), ANN over-fetch + post-filter, and the LanceDB
  ``galaxy_id IN (...)`` prefilter.

Queries are held-out draws from the same blobs. Usage::

    .venv/bin/python benchmarks/bench_ann.py --n 100000 --dim 768
    .venv/bin/python benchmarks/bench_ann.py --n 1000000 --dim 384 --types IVF_HNSW_SQ

Prints a markdown table (paste it into docs/benchmarks_embeddings.md) and, with ``--json``, writes the
numbers to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from warehouse import Warehouse
from warehouse import search as vs

TABLE = "embeddings_bench"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def centres(dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(clusters, dim))
    return (c / np.linalg.norm(c, axis=1, keepdims=True)).astype(np.float32)


def draw(c: np.ndarray, n: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` points around random centres, isotropic noise of total norm ~``spread``."""
    dim = c.shape[1]
    noise = rng.standard_normal((n, dim), dtype=np.float32) * np.float32(spread / np.sqrt(dim))
    return c[rng.integers(0, len(c), n)] + noise


def write_table(wh: Warehouse, n: int, c: np.ndarray, spread: float, seed: int, chunk: int = 100_000) -> np.ndarray:
    """Write the vectors to ``embeddings_bench`` in chunks; return them L2-normalised (for numpy search)."""
    import lancedb

    dim = c.shape[1]
    rng = np.random.default_rng(seed + 1)
    unit = np.empty((n, dim), dtype=np.float32)
    schema = pa.schema([pa.field("galaxy_id", pa.string()), pa.field("vector", pa.list_(pa.float32(), dim))])

    def batches():
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            v = draw(c, hi - lo, spread, rng)
            unit[lo:hi] = v / np.linalg.norm(v, axis=1, keepdims=True)
            ids = pa.array([f"bench:{i:07d}" for i in range(lo, hi)])
            yield pa.record_batch([ids, pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), dim)], schema=schema)
            log(f"  wrote {hi:,}/{n:,} vectors")

    db = lancedb.connect(str(wh.lance_dir))
    db.create_table(TABLE, data=pa.RecordBatchReader.from_batches(schema, batches()), schema=schema)
    return unit


def exact_numpy(unit: np.ndarray, q: np.ndarray, k: int, subset: np.ndarray | None = None) -> np.ndarray:
    qn = q / np.linalg.norm(q)
    m = unit if subset is None else unit[subset]
    d = 1.0 - m @ qn
    idx = np.argpartition(d, k)[:k]
    idx = idx[np.argsort(d[idx])]
    return idx if subset is None else subset[idx]


def pct(times: list[float]) -> tuple[float, float]:
    a = np.asarray(times) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def ids_of(table: pa.Table) -> list[int]:
    return [int(g.split(":")[1]) for g in table.column("galaxy_id").to_pylist()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--spread", type=float, default=0.6, help="noise norm relative to the unit centres")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--types", default="IVF_HNSW_SQ", help="comma-separated index types (IVF_PQ, IVF_HNSW_SQ, ...)")
    ap.add_argument("--nprobes", default="16,32,64")
    ap.add_argument("--refine", default="5,10,20")
    ap.add_argument("--lance-exact-queries", type=int, default=20)
    ap.add_argument("--no-filters", action="store_true")
    ap.add_argument("--max-listed", type=int, default=100_000,
                    help="skip the take / IN-list strategies for allowed sets larger than this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--workdir", help="where to put the temporary warehouse (default: system temp)")
    args = ap.parse_args(argv)

    k = args.k
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    log(f"{args.n:,} x {args.dim} vectors, {args.clusters} clusters, {cores} cores, {platform.processor()}")
    root = Path(tempfile.mkdtemp(prefix="bench_ann_", dir=args.workdir))
    results: dict = {"n": args.n, "dim": args.dim, "clusters": args.clusters, "cores": cores, "k": k, "rows": []}
    try:
        wh = Warehouse.open(root)
        c = centres(args.dim, args.clusters, args.seed)
        t0 = time.perf_counter()
        unit = write_table(wh, args.n, c, args.spread, args.seed)
        results["write_s"] = time.perf_counter() - t0
        data_bytes = sum(p.stat().st_size for p in Path(wh.table_uri(TABLE)).rglob("*.lance"))
        queries = draw(c, args.queries, args.spread, np.random.default_rng(args.seed + 2))

        log("exact numpy search")
        truth, times = [], []
        for q in queries:
            t = time.perf_counter()
            truth.append(set(exact_numpy(unit, q, k).tolist()))
            times.append(time.perf_counter() - t)
        np50, np99 = pct(times)
        results["rows"].append({"method": "exact numpy", "recall": 1.0, "p50_ms": np50, "p99_ms": np99})

        log("exact LanceDB flat search")
        tbl = vs._open(wh, TABLE)
        times, hits = [], 0
        for q, tr in zip(queries[: args.lance_exact_queries], truth):
            t = time.perf_counter()
            res = (tbl.search(q, vector_column_name="vector").distance_type("cosine").limit(k)
                   .bypass_vector_index().select(["galaxy_id", "_distance"]).to_arrow())
            got = ids_of(res)
            times.append(time.perf_counter() - t)
            hits += len(tr & set(got))
        p50, p99 = pct(times)
        results["rows"].append({"method": "exact LanceDB (flat)", "recall": hits / (k * len(times)),
                                "p50_ms": p50, "p99_ms": p99})

        for index_type in [s for s in args.types.split(",") if s]:
            params = vs.default_index_params(args.n, args.dim, index_type)
            log(f"building {index_type} {params}")
            report = vs.build_index(wh, "bench", params=params, force=True)
            log(f"  built in {report.build_s:.1f} s, {report.index_bytes / 2**20:.1f} MiB")
            for nprobes in [int(x) for x in args.nprobes.split(",")]:
                for refine in [int(x) for x in args.refine.split(",")]:
                    times, hits = [], 0
                    for q, tr in zip(queries, truth):
                        t = time.perf_counter()
                        got = ids_of(vs.knn(wh, TABLE, q, k, nprobes=nprobes, refine_factor=refine))
                        times.append(time.perf_counter() - t)
                        hits += len(tr & set(got))
                    p50, p99 = pct(times)
                    row = {"method": index_type, "nprobes": nprobes, "refine": refine,
                           "recall": hits / (k * len(queries)), "p50_ms": p50, "p99_ms": p99,
                           "speedup_p50": np50 / p50, "build_s": report.build_s, "index_mib": report.index_bytes / 2**20,
                           "partitions": params.num_partitions, "sub_vectors": params.num_sub_vectors}
                    results["rows"].append(row)
                    log(f"  nprobes={nprobes} refine={refine}: recall@{k} {row['recall']:.3f}, "
                        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")

        if not args.no_filters:
            rng = np.random.default_rng(args.seed + 3)
            for frac in (0.01, 0.1, 0.5):
                subset = np.sort(rng.choice(args.n, size=max(k, int(frac * args.n)), replace=False))
                allowed = [f"bench:{i:07d}" for i in subset]
                strategies = (("numpy over subset (take)", 10**12, 2.0), ("ANN over-fetch + post-filter", -1, 0.0),
                              ("LanceDB prefilter IN", -1, 2.0))
                for label, limit, post in strategies:
                    if len(allowed) > args.max_listed and "post-filter" not in label:
                        log(f"  where {frac:.0%} {label}: skipped ({len(allowed):,} ids > --max-listed)")
                        continue
                    old = vs.EXACT_SUBSET_MAX, vs.POSTFILTER_MIN_FRACTION
                    vs.EXACT_SUBSET_MAX, vs.POSTFILTER_MIN_FRACTION = limit, post
                    times, hits = [], 0
                    try:
                        for q in queries[:20]:
                            want = set(exact_numpy(unit, q, k, subset).tolist())
                            t = time.perf_counter()
                            got = ids_of(vs.knn(wh, TABLE, q, k, allowed))
                            times.append(time.perf_counter() - t)
                            hits += len(want & set(got))
                    finally:
                        vs.EXACT_SUBSET_MAX, vs.POSTFILTER_MIN_FRACTION = old
                    p50, p99 = pct(times)
                    results["rows"].append({"method": f"where {frac:.0%}: {label}", "recall": hits / (k * len(times)),
                                            "p50_ms": p50, "p99_ms": p99})
                    log(f"  where {frac:.0%} {label}: p50 {p50:.1f} ms")
        results["data_mib"] = data_bytes / 2**20
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"\n{args.n:,} x {args.dim} float32 ({results['data_mib']:.0f} MiB in Lance), {args.clusters} clusters, "
          f"{len(queries)} queries, k={k}, {cores} cores; write {results['write_s']:.1f} s\n")
    print("| method | nprobes | refine | recall@10 | p50 ms | p99 ms | speed-up vs numpy (p50) | build s | index MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results["rows"]:
        print(f"| {r['method']} | {r.get('nprobes', '')} | {r.get('refine', '')} | {r['recall']:.3f} | "
              f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {np50 / r['p50_ms']:.1f}x | "
              f"{r.get('build_s', float('nan')):.0f} | {r.get('index_mib', float('nan')):.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
