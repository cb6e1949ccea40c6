"""Load test of ``astrovision serve`` on loopback: p50/p99 per endpoint beside the kernel it wraps.

Writes a temporary warehouse through ``Warehouse.upsert`` (real Lance): ``n`` galaxies (three labels,
``ra`` uniform in [0, 360) so ``ra < 3.6`` / ``36`` / ``180`` allow 1 / 10 / 50 %) with photometry, and
an ``embeddings_random_vits14`` table of ``n`` seeded 384-d vectors with the structure of real
embeddings (``bench_ann.Realistic``, the vectors ``bench_ann.py`` makes); the ANN index is built from
``warehouse.search.INDEX_MIN_ROWS`` rows. Starts the real server (``python -m service.cli serve``,
uvicorn) as a subprocess, warms it with two requests per endpoint, then sends a fixed number of
requests per endpoint from an async client (``httpx.AsyncClient``) with 1 and with 8 in flight, and
reports per endpoint: errors (non-200), p50 / p99 / max latency, requests/s, and the server's resident
memory (``VmRSS``) before and after. ``--baseline-code DIR`` loads a second server run from another
source tree (an export of an older commit) on the same warehouse: today's code in the same run. In the same run, the kernel alone is timed in this process on its
own :class:`warehouse.ReadSession`: the search call on the matrix or index (``knn_plan``, the ``where``
already turned into row positions), a Lance ``take`` of one row by key, and the ``where`` filter; each
endpoint's p50 is also given as a ratio to its kernel and as the overhead in ms. Filtered answers are
checked against exact numpy over the allowed rows (recall@10). Endpoints:

- ``GET /galaxies/{id}`` (record: catalogue, photometry, predictions, flags);
- ``GET /galaxies/{id}/similar?k=10`` (ANN at and above the index threshold, else exact numpy);
- ``GET /galaxies/{id}/similar?k=10&where=ra < X`` at 1 %, 10 % and 50 % selectivity (one ``where`` each);
- ``POST /sql`` point query by id (``SELECT * FROM galaxy_features WHERE galaxy_id = ...``).

Usage::

    flock /tmp/astrovision-heavy.lock .venv/bin/python benchmarks/bench_http.py --n 100000 --requests 200

Prints a markdown table (docs/benchmarks.md) and, with ``--json``, writes the numbers to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_ann import Realistic  # the benchmarks folder is the script's

from features.flags import Flag
from warehouse import ReadSession, Warehouse, schemas, search
from warehouse.schemas.embeddings import embedding_spec

LABELS = ("Barred Spiral", "Round Smooth", "Edge-on")
ENCODER = "random_vits14"


def _fill(table: str, n: int, **columns) -> pa.Table:

    return schemas.rows_with_defaults(table, n, **columns)


def build(root: Path, n: int, dim: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The benchmark warehouse; returns the galaxy ids, their ra and their unit vectors."""
    rng = np.random.default_rng(seed)
    wh = Warehouse.open(root)
    ids = [f"bench:{i:07d}" for i in range(n)]
    shard = [f"bench-{i // 10_000:05d}" for i in range(n)]
    ra = rng.uniform(0, 360, n)
    wh.upsert("galaxies", _fill("galaxies", n, galaxy_id=ids, source=["bench"] * n, native_id=ids, shard=shard,
                                row_index=list(range(n)), ra=ra.tolist(),
                                dec=rng.uniform(-30, 60, n).tolist(), label_name=[LABELS[i % 3] for i in range(n)],
                                image_sha1=["0" * 40] * n, flags=[0] * n))
    wh.upsert("photometry", _fill("photometry", n, galaxy_id=ids, shard=shard, source=["bench"] * n,
                                  n_candidates=[1] * n, g_r=rng.normal(0.7, 0.2, n).tolist(),
                                  flags=[int(Flag.PHOT_NO_MATCH) if i % 50 == 0 else 0 for i in range(n)]))
    vecs, _ = Realistic(dim, 1000, seed).draw(n, rng)
    fsl = pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), dim)
    spec = embedding_spec(ENCODER, dim)
    wh.upsert(spec.name, pa.table({"galaxy_id": ids, "shard": shard, "encoder": [ENCODER] * n,
                                   "weights_sha256": ["0" * 64] * n, "weights_origin": ["synthetic"] * n,
                                   "flags": pa.array([0] * n, pa.int64()), "vector": fsl, "patch_mean": fsl}),
              spec=spec)
    if n >= search.INDEX_MIN_ROWS:
        report = search.build_index(wh, ENCODER)
        print(f"index: {report.reason}, built in {report.build_s:.0f} s", file=sys.stderr)
    return ids, ra, vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def prepared(root: Path, n: int, dim: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray, float]:
    """The benchmark warehouse at ``root``, built once and kept: reused when its ``bench.json`` matches.

    Returns the ids, ``ra``, the unit vectors and the seconds the build took (when it was built).
    ``ra.npy`` and ``unit.npy`` beside the warehouse keep what the recall check compares against.
    """
    meta_path = root / "bench.json"
    want = {"n": n, "dim": dim, "seed": seed}
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in want} != want:
            raise SystemExit(f"{root} holds a benchmark warehouse of {meta}, not {want}: pass another --warehouse")
        ids = [f"bench:{i:07d}" for i in range(n)]
        return ids, np.load(root / "ra.npy"), np.load(root / "unit.npy"), meta["build_s"]
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root} is not empty and holds no bench.json: pass an empty or new --warehouse")
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ids, ra, unit = build(root / "wh", n, dim, seed)
    build_s = time.perf_counter() - t0
    np.save(root / "ra.npy", ra)
    np.save(root / "unit.npy", unit.astype(np.float32))
    meta_path.write_text(json.dumps({**want, "build_s": build_s}))
    return ids, ra, unit, build_s


def rss_mib(pid: int) -> float:
    """Resident memory of a process (``VmRSS`` of ``/proc/<pid>/status``), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(url: str, requests: list[tuple[str, str, dict]], concurrency: int):
    import httpx

    latencies: list[float] = []
    errors = 0
    queue = list(requests)
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        async def worker():
            nonlocal errors
            while queue:
                method, path, kwargs = queue.pop()
                t0 = time.perf_counter()
                r = await client.request(method, path, **kwargs)
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return np.array(latencies) * 1000, errors, wall


SELECTIVITY = {"1 %": 3.6, "10 %": 36.0, "50 %": 180.0}
"""``where = ra < X`` per selectivity (ra is uniform in [0, 360))."""


def percentiles(ms: list[float] | np.ndarray) -> tuple[float, float]:
    a = np.asarray(ms, dtype=float)
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def kernels(root: Path, pick: list[str], ra: np.ndarray, unit: np.ndarray, ids: list[str]) -> dict[str, tuple]:
    """The kernel of each endpoint, timed alone on a warm session of this process (p50, p99 ms).

    With one BLAS thread, as the server runs its requests.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _kernels(root, pick, ra, unit, ids)


def _kernels(root: Path, pick: list[str], ra: np.ndarray, unit: np.ndarray, ids: list[str]) -> dict[str, tuple]:
    session = ReadSession(Warehouse.open(root))
    snap = session.snapshot()
    table = f"embeddings_{ENCODER}"
    rows = {g: i for i, g in enumerate(ids)}
    out: dict[str, tuple] = {}
    snap.take("galaxies", pick[:1])
    out["take"] = percentiles([_timed(lambda g=g: snap.take("galaxies", [g])) for g in pick])
    search.knn_plan(snap, table, unit[0], 10)
    out["knn"] = percentiles([_timed(lambda g=g: search.knn_plan(snap, table, unit[rows[g]], 10)) for g in pick])
    m = search.planner.matrix(snap, table)
    for name, x in SELECTIVITY.items():
        allowed = pa.array([g for g, r in zip(ids, ra) if r < x])
        pos = m.positions(allowed)
        t_filter = [_timed(lambda w=f"ra < {x}": search.allowed_id_array(snap, w, snap.engine())) for _ in range(3)]
        out[f"knn {name}"] = percentiles([_timed(lambda g=g, p=pos: search.knn_plan(
            snap, table, unit[rows[g]], 10, _positions=lambda _m, p=p: (p, True))) for g in pick])
        out[f"filter {name}"] = percentiles(t_filter)
    return out


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def recall(url: str, pick: list[str], x: float, ra: np.ndarray, unit: np.ndarray, ids: list[str]) -> float:
    """Mean recall@10 of the server's filtered answers against exact numpy over the allowed rows."""
    import httpx

    rows = {g: i for i, g in enumerate(ids)}
    allowed = np.flatnonzero(ra < x)
    hits = total = 0
    for g in pick:
        got = httpx.get(f"{url}/galaxies/{g}/similar", params={"k": 10, "where": f"ra < {x}"}, timeout=120).json()
        d = 1.0 - unit[allowed] @ unit[rows[g]]
        want = {ids[i] for i in allowed[np.argsort(d, kind="stable")[:10]]}
        kth = np.sort(d)[9]
        hits += sum(1 for n in got["neighbours"] if n["galaxy_id"] in want or n["distance"] <= kth + 1e-6)
        total += 10
    return hits / total


def serve(root: Path, code: Path | None, cwd: Path) -> tuple[subprocess.Popen, str]:
    """A real server (``python -m service.cli serve``) on a free loopback port, once it answers ``/healthz``."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if code is not None:
        env["PYTHONPATH"] = str(code.resolve())
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "--home", str(root), "serve", "--port",
                             str(port), "--log-level", "warning"], env=env, cwd=cwd)
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--requests", type=int, default=200, help="requests per endpoint and concurrency")
    ap.add_argument("--concurrency", default="1,8", help="requests in flight, comma-separated runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--baseline-first", action="store_true", help="load the baseline server before this tree's "
                    "(run both orders: the load of a shared machine drifts during a run)")
    ap.add_argument("--recall-queries", type=int, default=30, help="filtered queries checked per selectivity")
    ap.add_argument("--warehouse", type=Path, help="keep the benchmark warehouse in this folder and reuse it on the "
                    "next run with the same --n/--dim/--seed (else a temporary one, removed at the end)")
    ap.add_argument("--build-only", action="store_true", help="build (or check) the --warehouse and stop")
    ap.add_argument("--baseline-code", type=Path, help="also load a server run from this source tree (PYTHONPATH: "
                    "an export of an older commit), on the same warehouse, one request at a time")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_http_"))
    base = args.warehouse or tmp
    proc = None
    try:
        ids, ra, unit, build_s = prepared(base, args.n, args.dim, args.seed)
        print(f"warehouse {base / 'wh'}: {args.n} galaxies, {args.n} x {args.dim} vectors, built in {build_s:.0f} s",
              file=sys.stderr)
        if args.build_only:
            return
        rng = np.random.default_rng(args.seed + 1)
        pick = [ids[i] for i in rng.integers(0, len(ids), args.requests)]
        endpoints = {
            "GET /galaxies/{id}": ("take", [("GET", f"/galaxies/{g}", {}) for g in pick]),
            "GET /galaxies/{id}/similar?k=10": ("knn", [("GET", f"/galaxies/{g}/similar", {"params": {"k": 10}})
                                                        for g in pick]),
            **{f"GET .../similar?k=10&where= ({name})": (f"knn {name}", [
                ("GET", f"/galaxies/{g}/similar", {"params": {"k": 10, "where": f"ra < {x}"}}) for g in pick])
               for name, x in SELECTIVITY.items()},
            "POST /sql point query by id": ("take", [("POST", "/sql", {"json": {
                "query": f"SELECT * FROM galaxy_features WHERE galaxy_id = '{g}'"}}) for g in pick]),
        }
        t0 = time.perf_counter()
        kern = kernels(base / "wh", pick, ra, unit, ids)
        print(f"kernels timed in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        runs = [("this tree", None, [int(c) for c in args.concurrency.split(",")])]
        if args.baseline_code is not None:
            runs.insert(0 if args.baseline_first else 1, (f"baseline {args.baseline_code}", args.baseline_code, [1]))
        rows, recalls, rss = [], {}, {}
        for label, code, concs in runs:
            proc, url = serve(base / "wh", code, tmp)
            idle = rss_mib(proc.pid)
            for _, reqs in endpoints.values():  # warm-up: the vector matrix, the id maps, the where positions
                asyncio.run(load(url, reqs[:2], 1))
            warm = rss_mib(proc.pid)
            recalls[label] = {name: recall(url, pick[:args.recall_queries], x, ra, unit, ids)
                              for name, x in SELECTIVITY.items()}
            for conc in concs:
                for name, (kname, reqs) in endpoints.items():
                    before = rss_mib(proc.pid)
                    lat, errors, wall = asyncio.run(load(url, reqs, conc))
                    p50, p99 = percentiles(lat)
                    rows.append({"server": label, "endpoint": name, "in_flight": conc, "requests": len(reqs),
                                 "errors": errors, "p50_ms": p50, "p99_ms": p99, "max_ms": float(lat.max()),
                                 "rps": len(reqs) / wall, "kernel": kname, "kernel_p50_ms": kern[kname][0],
                                 "kernel_p99_ms": kern[kname][1], "rss_before_mib": before,
                                 "rss_after_mib": rss_mib(proc.pid)})
            rss[label] = (idle, warm, rss_mib(proc.pid))
            stop(proc)
            proc = None
        load_avg = os.getloadavg()[0]
        print(f"\nwarehouse built in {build_s:.0f} s; {args.n:,} galaxies, {args.dim}-d realistic vectors"
              f"{', ANN index' if args.n >= search.INDEX_MIN_ROWS else ''}, {args.requests} requests per endpoint; "
              f"{os.cpu_count()} CPUs, load {load_avg:.1f}, {platform.python_version()}; server RSS idle / after "
              "warm-up / at the end: " + "; ".join(f"{k} {a:.0f} / {b:.0f} / {c:.0f} MiB" for k, (a, b, c) in rss.items())
              + "\n")
        print("| server | endpoint | in flight | errors | p50 ms | p99 ms | max ms | req/s | kernel p50 / p99 ms | "
              "p50 / kernel | overhead p50 ms | RSS before -> after (MiB) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['server']} | `{r['endpoint']}` | {r['in_flight']} | {r['errors']} | {r['p50_ms']:.1f} | "
                  f"{r['p99_ms']:.1f} | {r['max_ms']:.0f} | {r['rps']:.1f} | {r['kernel_p50_ms']:.2f} / "
                  f"{r['kernel_p99_ms']:.2f} ({r['kernel']}) | {r['p50_ms'] / r['kernel_p50_ms']:.1f}x | "
                  f"{r['p50_ms'] - r['kernel_p50_ms']:.1f} | {r['rss_before_mib']:.0f} -> {r['rss_after_mib']:.0f} |")
        print("\nwhere filters alone (DuckDB, p50 / p99 ms): " + ", ".join(
            f"{name} {kern['filter ' + name][0]:.1f} / {kern['filter ' + name][1]:.1f}" for name in SELECTIVITY))
        for label, rec in recalls.items():
            print(f"recall@10 of the filtered answers vs exact numpy ({args.recall_queries} queries), {label}: " + ", ".join(
                f"{name} {r:.3f}" for name, r in rec.items()))
        if args.json:
            args.json.write_text(json.dumps({"n": args.n, "dim": args.dim, "rows": rows, "recall": recalls,
                                             "kernels": kern, "rss": rss, "load": load_avg,
                                             "build_s": build_s}, indent=1))
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
