"""Lookalike search at scale: exact vs ANN, filtered routes, appends (nothing is stored in git).

Generates ``n`` seeded vectors, writes them to an embeddings table of a temporary warehouse beside a
``galaxies`` table (``ra`` uniform in [0, 360) so ``ra < 3.6`` keeps 1 %, and ``label_name`` the
vector's cluster, a filter correlated with the geometry), and measures, in the same run, against
exact numpy (normalised matrix, one mat-vec per query) as the baseline and the truth:

- unfiltered: exact through the planner's cached matrix, then the ANN index
  (:func:`warehouse.search.build_index`: build time, size) for each (nprobes, refine_factor): p50/p99
  and recall@10, through :func:`warehouse.search.knn_plan` (the code path of every ``similar``);
- filtered at 1 %, 10 %, 50 % (uniform ``ra`` cuts) and one cluster-correlated label: each route forced
  (exact over the subset, ANN with the row-id prefilter, ANN over-fetch + post-filter) given the
  allowed ids, and the planner's own choice end to end through :func:`warehouse.search.similar_plan`
  (the DuckDB ``where``, ids -> positions, search, the features join of the k results);
- appends: 10 % new rows in a new fragment; recall and latency with the index not yet covering them
  (Lance searches them flat), then :func:`warehouse.search.update_index` (time) and again.

``--vectors blobs``: isotropic Gaussian blobs around random unit centres (flatters every index).
``--vectors realistic`` (default): the structure of real embeddings: a shared mean direction, a
low-rank latent space with a power-law spectrum, Zipf-distributed cluster sizes, anisotropic
clusters of log-normal scale, Student-t (3 d.o.f.) radial tails, a little isotropic noise.

Usage::

    .venv/bin/python benchmarks/bench_ann.py --n 100000 --dim 384
    flock /work/wt/bench.lock .venv/bin/python benchmarks/bench_ann.py --n 1000000 --dim 384 --json ann.json

Prints markdown tables (pasted into docs/benchmarks_embeddings.md); ``--json`` writes the numbers.
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

import lance
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from warehouse import ReadSession, Warehouse, schemas
from warehouse import search as vs

TABLE = "embeddings_bench"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ vectors
class Blobs:
    """Isotropic Gaussian blobs around random unit centres, noise of total norm ~``spread``."""

    def __init__(self, dim: int, clusters: int, seed: int, spread: float = 0.6) -> None:
        rng = np.random.default_rng(seed)
        c = rng.normal(size=(clusters, dim))
        self.centres = (c / np.linalg.norm(c, axis=1, keepdims=True)).astype(np.float32)
        self.spread = spread

    def draw(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        dim = self.centres.shape[1]
        z = rng.integers(0, len(self.centres), n)
        noise = rng.standard_normal((n, dim), dtype=np.float32) * np.float32(self.spread / np.sqrt(dim))
        return self.centres[z] + noise, z


class Realistic:
    """Vectors with the structure of real image embeddings (see the module docstring)."""

    def __init__(self, dim: int, clusters: int, seed: int, rank: int = 64) -> None:
        rng = np.random.default_rng(seed)
        self.rank = rank
        self.basis = np.linalg.qr(rng.normal(size=(dim, rank)))[0].astype(np.float32)  # dim x rank
        spectrum = (1.0 + np.arange(rank)) ** -0.8
        mean = rng.normal(size=dim)
        self.mean = (1.2 * mean / np.linalg.norm(mean)).astype(np.float32)
        w = (1.0 + np.arange(clusters)) ** -1.1
        self.weights = w / w.sum()
        self.centres = (rng.normal(size=(clusters, rank)) * np.sqrt(spectrum)).astype(np.float32)
        a = rng.normal(size=(clusters, rank, rank)) / np.sqrt(rank)
        a *= rng.lognormal(0.0, 0.7, size=(clusters, 1, rank)) * np.sqrt(spectrum)[None, None, :]
        self.shapes = (a * rng.lognormal(np.log(0.45), 0.4, size=(clusters, 1, 1))).astype(np.float32)
        self.iso = np.float32(0.05 / np.sqrt(dim))

    def draw(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        z = rng.choice(len(self.weights), size=n, p=self.weights)
        g = rng.standard_normal((n, self.rank), dtype=np.float32)
        g *= np.sqrt(3.0 / rng.chisquare(3.0, size=n)).astype(np.float32)[:, None]  # Student-t radial tails
        lat = self.centres[z].copy()
        order = np.argsort(z, kind="stable")
        bounds = np.flatnonzero(np.diff(z[order])) + 1
        for idx in np.split(order, bounds):
            lat[idx] += g[idx] @ self.shapes[z[idx[0]]]
        x = self.mean + lat @ self.basis.T
        x += rng.standard_normal(x.shape, dtype=np.float32) * self.iso
        return x.astype(np.float32), z


# ------------------------------------------------------------------------------------ tables
def _fsl(v: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(v).ravel()), v.shape[1])


def write_vectors(wh: Warehouse, gen, n: int, seed: int, offset: int = 0,
                  chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Write (or append) ``n`` vectors to ``embeddings_bench``; return them L2-normalised and their clusters."""
    dim = gen.basis.shape[0] if hasattr(gen, "basis") else gen.centres.shape[1]
    rng = np.random.default_rng(seed)
    unit = np.empty((n, dim), dtype=np.float32)
    clusters = np.empty(n, dtype=np.int64)
    schema = pa.schema([pa.field("galaxy_id", pa.string()), pa.field("vector", pa.list_(pa.float32(), dim))])

    def batches():
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            v, z = gen.draw(hi - lo, rng)
            unit[lo:hi] = v / np.linalg.norm(v, axis=1, keepdims=True)
            clusters[lo:hi] = z
            ids = pa.array([f"bench:{offset + i:07d}" for i in range(lo, hi)])
            yield pa.record_batch([ids, _fsl(v)], schema=schema)
        log(f"  wrote {n:,} vectors")

    reader = pa.RecordBatchReader.from_batches(schema, batches())
    lance.write_dataset(reader, wh.table_uri(TABLE), schema=schema, mode="append" if offset else "create")
    return unit, clusters


def write_galaxies(wh: Warehouse, n: int, clusters: np.ndarray, seed: int) -> np.ndarray:
    """A ``galaxies`` table for the ``where``: uniform ``ra``, ``label_name`` = cluster. Returns ``ra``."""
    spec = schemas.get("galaxies")
    ra = np.random.default_rng(seed).uniform(0, 360, n)
    ids = [f"bench:{i:07d}" for i in range(n)]
    given = {"galaxy_id": ids, "source": ["bench"] * n, "native_id": ids, "shard": ["bench-00000"] * n,
             "ra": ra, "dec": np.zeros(n), "label_name": [f"c{c}" for c in clusters]}

    def column(f: pa.Field) -> pa.Array:
        if f.name in given:
            return pa.array(given[f.name], f.type)
        if f.nullable:
            return pa.nulls(n, f.type)
        return pa.array(["" if pa.types.is_string(f.type) else (True if pa.types.is_boolean(f.type) else 0)] * n,
                        f.type)

    wh.upsert("galaxies", pa.table({f.name: column(f) for f in spec.columns}))
    return ra


# ------------------------------------------------------------------------------------ measuring
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


def run_queries(queries, truth, fn) -> dict:
    """p50/p99 of ``fn(q) -> (hits, plan)`` and recall@k against ``truth``; the routes the plans took."""
    times, hits, total, routes, cands = [], 0, 0, {}, []
    for q, tr in zip(queries, truth):
        t = time.perf_counter()
        res, plan = fn(q)
        times.append(time.perf_counter() - t)
        hits += len(set(tr) & set(ids_of(res)))
        total += len(tr)
        routes[plan.route] = routes.get(plan.route, 0) + 1
        cands.append(plan.candidates)
    p50, p99 = pct(times)
    return {"recall": hits / max(total, 1), "p50_ms": p50, "p99_ms": p99, "routes": routes,
            "candidates": float(np.median(cands)) if cands else 0.0}


def structure(unit: np.ndarray, queries: np.ndarray, k: int, rng: np.random.Generator) -> dict:
    """How hard the vectors are: mean cosine of random pairs, of a query's 1st and k-th neighbour."""
    i, j = rng.integers(0, len(unit), (2, 2000))
    qn = queries[:20] / np.linalg.norm(queries[:20], axis=1, keepdims=True)
    sims = np.sort(unit @ qn.T, axis=0)[::-1]
    return {"cos_random_pair": float(np.mean(np.sum(unit[i] * unit[j], axis=1))),
            "cos_1nn": float(sims[0].mean()), f"cos_{k}nn": float(sims[k - 1].mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--vectors", choices=["realistic", "blobs"], default="realistic")
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--filter-queries", type=int, default=40)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--index-type", default="IVF_HNSW_SQ")
    ap.add_argument("--ef-construction", type=int, default=None, help="HNSW build beam (default: IndexParams)")
    ap.add_argument("--nprobes", default="4,8,16")
    ap.add_argument("--refine", default="2,5,10")
    ap.add_argument("--append", type=float, default=0.1, help="fraction of new rows appended after the build")
    ap.add_argument("--max-listed", type=int, default=100_000,
                    help="skip the row-id prefilter route for allowed sets larger than this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--workdir", help="where to put the temporary warehouse (default: system temp)")
    args = ap.parse_args(argv)

    k = args.k
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    log(f"{args.n:,} x {args.dim} {args.vectors} vectors, {args.clusters} clusters, {cores} cores, "
        f"{platform.processor()}")
    root = Path(tempfile.mkdtemp(prefix="bench_ann_", dir=args.workdir))
    res: dict = {"n": args.n, "dim": args.dim, "vectors": args.vectors, "clusters": args.clusters,
                 "cores": cores, "k": k, "unfiltered": [], "filtered": [], "append": {}}
    gen = (Realistic if args.vectors == "realistic" else Blobs)(args.dim, args.clusters, args.seed)
    if isinstance(gen, Blobs):
        gen.basis = np.zeros((args.dim, 0))
    try:
        wh = Warehouse.open(root)
        session = ReadSession(wh)  # owns the matrix, filter and engine caches, as in the server
        t0 = time.perf_counter()
        unit, clusters = write_vectors(wh, gen, args.n, args.seed + 1)
        ra = write_galaxies(wh, args.n, clusters, args.seed + 5)
        res["write_s"] = time.perf_counter() - t0
        res["data_mib"] = sum(p.stat().st_size for p in Path(wh.table_uri(TABLE)).rglob("*.lance")) / 2**20
        queries, _ = gen.draw(args.queries, np.random.default_rng(args.seed + 2))
        res["structure"] = structure(unit, queries, k, np.random.default_rng(args.seed + 4))
        log(f"  structure {res['structure']}")

        log("exact numpy")
        truth, times = [], []
        for q in queries:
            t = time.perf_counter()
            truth.append(exact_numpy(unit, q, k).tolist())
            times.append(time.perf_counter() - t)
        np50, np99 = pct(times)
        res["numpy_p50_ms"], res["numpy_p99_ms"] = np50, np99
        res["unfiltered"].append({"method": "exact numpy", "recall": 1.0, "p50_ms": np50, "p99_ms": np99})
        t = time.perf_counter()
        vs.knn_plan(session.snapshot(), TABLE, queries[0], k)
        res["matrix_load_s"] = time.perf_counter() - t
        r = run_queries(queries[:50], truth, lambda q: vs.knn_plan(session.snapshot(), TABLE, q, k))
        res["unfiltered"].append({"method": "exact (planner, cached matrix)", **r})
        log(f"  numpy p50 {np50:.1f} ms; planner exact p50 {r['p50_ms']:.1f} ms; matrix load {res['matrix_load_s']:.1f} s")

        params = vs.default_index_params(args.n, args.dim, args.index_type)
        if args.ef_construction:
            params = vs.IndexParams(**{**params.as_dict(), "ef_construction": args.ef_construction})
        log(f"building {params}")
        report = vs.build_index(wh, "bench", params=params, force=True)
        res["index"] = {"params": params.as_dict(), "build_s": report.build_s, "index_mib": report.index_bytes / 2**20}
        log(f"  built in {report.build_s:.1f} s, {report.index_bytes / 2**20:.1f} MiB")
        for nprobes in [int(x) for x in args.nprobes.split(",")]:
            for refine in [int(x) for x in args.refine.split(",")]:
                r = run_queries(queries, truth, lambda q, a=nprobes, b=refine: vs.knn_plan(
                    wh, TABLE, q, k, nprobes=a, refine_factor=b))
                res["unfiltered"].append({"method": args.index_type, "nprobes": nprobes, "refine": refine, **r})
                log(f"  nprobes={nprobes} refine={refine}: recall {r['recall']:.3f} p50 {r['p50_ms']:.1f} "
                    f"p99 {r['p99_ms']:.1f}")

        fq = queries[: args.filter_queries]
        big = max(clusters.max() + 1, 1)
        sizes = np.bincount(clusters, minlength=big)
        label = int(np.argmin(np.abs(sizes - 0.1 * args.n)))  # the cluster nearest 10 % of the table
        filters = [(f"ra < {360 * f:g}", np.flatnonzero(ra < 360 * f), f"{f:.0%} (uniform)") for f in (0.01, 0.1, 0.5)]
        filters.append((f"label_name = 'c{label}'", np.flatnonzero(clusters == label),
                        f"{sizes[label] / args.n:.1%} (one cluster)"))
        for where, subset, name in filters:
            want = [exact_numpy(unit, q, k, subset).tolist() for q in fq]
            allowed = pa.array([f"bench:{i:07d}" for i in subset])
            for route in ("exact_subset", "ann_prefilter", "ann_postfilter"):
                if route == "ann_prefilter" and len(subset) > args.max_listed:
                    continue
                r = run_queries(fq, want, lambda q, rt=route, al=allowed: vs.knn_plan(session.snapshot(), TABLE, q, k, al,
                                                                                     route=rt))
                res["filtered"].append({"where": where, "selects": name, "allowed": len(subset), "method": route, **r})
                log(f"  {where} ({name}) {route}: recall {r['recall']:.3f} p50 {r['p50_ms']:.1f} p99 {r['p99_ms']:.1f}")
            r = run_queries(fq, want, lambda q, al=allowed: vs.knn_plan(session.snapshot(), TABLE, q, k, al))
            res["filtered"].append({"where": where, "selects": name, "allowed": len(subset), "method": "planner", **r})
            for cold in (True, False):
                parts: dict[str, list[float]] = {"filter_ms": [], "search_ms": [], "total_ms": []}

                def end_to_end(q, where=where, parts=parts, cold=cold):
                    if cold:
                        session.filters.clear()  # the where evaluated by DuckDB every time (the engine stays cached)
                    t = time.perf_counter()
                    found = vs.similar_plan(session.snapshot(), q, k, where=where, encoder="bench")
                    parts["total_ms"].append((time.perf_counter() - t) * 1000)
                    parts["filter_ms"].append(found.plan.filter_ms)
                    parts["search_ms"].append(found.plan.search_ms)
                    return pa.table({"galaxy_id": found.neighbours["galaxy_id"].to_arrow()}), found.plan

                r = run_queries(fq[:20], want, end_to_end)
                r.update({key: float(np.median(v)) for key, v in parts.items()})
                label = "similar_plan, where evaluated" if cold else "similar_plan, where cached"
                res["filtered"].append({"where": where, "selects": name, "allowed": len(subset), "method": label, **r})
                log(f"  {where} {label}: p50 {r['p50_ms']:.1f} p99 {r['p99_ms']:.1f} (filter {r['filter_ms']:.1f}, "
                    f"search {r['search_ms']:.1f}); planner {res['filtered'][-2 if cold else -3]['routes']}")

        if args.append > 0:
            n_new = int(args.append * args.n)
            log(f"appending {n_new:,} rows")
            new_unit, _ = write_vectors(wh, gen, n_new, args.seed + 7, offset=args.n)
            aq, _ = gen.draw(args.queries, np.random.default_rng(args.seed + 8))
            atruth = []
            for q in aq:
                a, b = exact_numpy(unit, q, k), exact_numpy(new_unit, q, k)
                qn = q / np.linalg.norm(q)
                cand = np.concatenate([a, b + args.n])
                d = 1 - np.concatenate([unit[a], new_unit[b]]) @ qn
                atruth.append(cand[np.argsort(d)[:k]].tolist())
            new_share = float(np.mean([np.mean(np.asarray(t) >= args.n) for t in atruth]))
            t = time.perf_counter()
            _, plan = vs.knn_plan(session.snapshot(), TABLE, aq[0], k)
            res["append"] = {"rows": n_new, "matrix_extend_s": time.perf_counter() - t,
                             "unindexed_rows": plan.unindexed_rows, "new_rows_in_truth": new_share}
            before = run_queries(aq, atruth, lambda q: vs.knn_plan(session.snapshot(), TABLE, q, k))
            upd = vs.update_index(wh, "bench", min_rows=1)
            after = run_queries(aq, atruth, lambda q: vs.knn_plan(session.snapshot(), TABLE, q, k))
            res["append"].update({"before_update": before, "update_s": upd.build_s, "update_action": upd.action,
                                  "index_mib_after": upd.index_bytes / 2**20, "after_update": after})
            log(f"  append: before update recall {before['recall']:.3f} p50 {before['p50_ms']:.1f}; update "
                f"{upd.action} in {upd.build_s:.1f} s; after recall {after['recall']:.3f} p50 {after['p50_ms']:.1f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print_tables(res, args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=float))
    return 0


def print_tables(res: dict, args: argparse.Namespace) -> None:
    s = res["structure"]
    kth = s[f"cos_{res['k']}nn"]
    print(f"\n{res['n']:,} x {res['dim']} float32 {res['vectors']} ({res['data_mib']:.0f} MiB in Lance), "
          f"{res['clusters']} clusters, {args.queries} queries, k={res['k']}, {res['cores']} cores; write "
          f"{res['write_s']:.1f} s; cached matrix load {res['matrix_load_s']:.1f} s; mean cos: random pair "
          f"{s['cos_random_pair']:.2f}, 1st NN {s['cos_1nn']:.2f}, {res['k']}th NN {kth:.2f}")
    ix = res.get("index", {})
    print(f"index {ix.get('params', {}).get('index_type')} ({ix.get('params', {}).get('num_partitions')} cells): "
          f"build {ix.get('build_s', 0):.0f} s, {ix.get('index_mib', 0):.1f} MiB\n")
    np50 = res["numpy_p50_ms"]
    print("| method | nprobes | refine | recall@10 | p50 ms | p99 ms | speed-up vs numpy (p50) |")
    print("|---|---|---|---|---|---|---|")
    for r in res["unfiltered"]:
        print(f"| {r['method']} | {r.get('nprobes', '')} | {r.get('refine', '')} | {r['recall']:.3f} | "
              f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {np50 / r['p50_ms']:.1f}x |")
    print("\n| where | selects | route | recall@10 | p50 ms | p99 ms | candidates | routes taken |")
    print("|---|---|---|---|---|---|---|---|")
    for r in res["filtered"]:
        extra = (f" (filter {r['filter_ms']:.1f} + search {r['search_ms']:.1f})" if "filter_ms" in r else "")
        print(f"| `{r['where']}` | {r['selects']} | {r['method']}{extra} | {r['recall']:.3f} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['candidates']:.0f} | {r['routes']} |")
    a = res.get("append")
    if a:
        b, f = a["before_update"], a["after_update"]
        print(f"\nappend {a['rows']:,} rows ({a['new_rows_in_truth']:.0%} of the true neighbours are new); cached "
              f"matrix extended in {a['matrix_extend_s']:.1f} s\n")
        print("| state | unindexed rows | recall@10 | p50 ms | p99 ms |\n|---|---|---|---|---|")
        print(f"| index not updated | {a['unindexed_rows']:,} | {b['recall']:.3f} | {b['p50_ms']:.1f} | {b['p99_ms']:.1f} |")
        print(f"| after update_index ({a['update_action']}, {a['update_s']:.1f} s) | 0 | {f['recall']:.3f} | "
              f"{f['p50_ms']:.1f} | {f['p99_ms']:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
