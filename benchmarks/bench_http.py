"""Load test of ``astrovision serve`` on loopback: p50/p99 latency and errors at 100,000 vectors.

Writes a temporary warehouse through ``Warehouse.upsert`` (real Lance): ``n`` galaxies (three labels)
with photometry, and an ``embeddings_random_vits14`` table of ``n`` seeded synthetic 384-d vectors in
Gaussian blobs (the structure survey embeddings have; no encoder runs). Starts the real server
(``python -m service.cli serve``) as a subprocess, warms it with one request per endpoint, then sends a
fixed number of requests per endpoint from an async client (``httpx.AsyncClient``, ``--concurrency``
in flight) and reports per endpoint: requests, errors (non-200), p50 / p99 / max latency, requests/s,
and the server's resident memory (``VmRSS``) before the load and after it. Endpoints:

- ``GET /galaxies/{id}`` (record: catalogue, photometry, predictions, flags);
- ``GET /galaxies/{id}/similar?k=10`` (exact numpy search over the whole table);
- ``GET /galaxies/{id}/similar?k=10&where=label_name = '...'`` (a third of the table allowed);
- ``POST /sql`` (an aggregate over the galaxy features view).

Usage::

    .venv/bin/python benchmarks/bench_http.py --n 100000 --requests 400 --concurrency 8

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

from features.flags import Flag
from warehouse import Warehouse, schemas
from warehouse.schemas.embeddings import embedding_spec

LABELS = ("Barred Spiral", "Round Smooth", "Edge-on")
ENCODER = "random_vits14"


def _fill(table: str, n: int, **columns) -> pa.Table:

    return schemas.rows_with_defaults(table, n, **columns)


def build(root: Path, n: int, dim: int, seed: int) -> list[str]:
    """The benchmark warehouse; returns the galaxy ids."""
    rng = np.random.default_rng(seed)
    wh = Warehouse.open(root)
    ids = [f"bench:{i:07d}" for i in range(n)]
    shard = [f"bench-{i // 10_000:05d}" for i in range(n)]
    wh.upsert("galaxies", _fill("galaxies", n, galaxy_id=ids, source=["bench"] * n, native_id=ids, shard=shard,
                                row_index=list(range(n)), ra=rng.uniform(0, 360, n).tolist(),
                                dec=rng.uniform(-30, 60, n).tolist(), label_name=[LABELS[i % 3] for i in range(n)],
                                image_sha1=["0" * 40] * n, flags=[0] * n))
    wh.upsert("photometry", _fill("photometry", n, galaxy_id=ids, shard=shard, source=["bench"] * n,
                                  n_candidates=[1] * n, g_r=rng.normal(0.7, 0.2, n).tolist(),
                                  flags=[int(Flag.PHOT_NO_MATCH) if i % 50 == 0 else 0 for i in range(n)]))
    centres = rng.normal(size=(200, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vecs = (centres[rng.integers(0, 200, n)] + 0.15 * rng.normal(size=(n, dim)) / np.sqrt(dim)).astype(np.float32)
    fsl = pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), dim)
    spec = embedding_spec(ENCODER, dim)
    wh.upsert(spec.name, pa.table({"galaxy_id": ids, "shard": shard, "encoder": [ENCODER] * n,
                                   "weights_sha256": ["0" * 64] * n, "weights_origin": ["synthetic"] * n,
                                   "flags": pa.array([0] * n, pa.int64()), "vector": fsl, "patch_mean": fsl}),
              spec=spec)
    return ids


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--requests", type=int, default=400, help="requests per endpoint")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import httpx

    tmp = Path(tempfile.mkdtemp(prefix="bench_http_"))
    proc = None
    try:
        t0 = time.perf_counter()
        ids = build(tmp / "wh", args.n, args.dim, args.seed)
        print(f"warehouse: {args.n} galaxies, {args.n} x {args.dim} vectors in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "--home", str(tmp / "wh"), "serve", "--port",
                                 str(port), "--log-level", "warning"], env=env, cwd=tmp)
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        rng = np.random.default_rng(args.seed + 1)
        pick = [ids[i] for i in rng.integers(0, len(ids), args.requests)]
        endpoints = {
            "GET /galaxies/{id}": [("GET", f"/galaxies/{g}", {}) for g in pick],
            "GET /galaxies/{id}/similar?k=10": [("GET", f"/galaxies/{g}/similar", {"params": {"k": 10}})
                                                for g in pick],
            "GET .../similar?k=10&where=label (1/3)": [
                ("GET", f"/galaxies/{g}/similar", {"params": {"k": 10, "where": f"label_name = '{LABELS[j % 3]}'"}})
                for j, g in enumerate(pick)],
            "POST /sql (aggregate)": [("POST", "/sql", {"json": {"query": "SELECT label_name, avg(g_r) AS g_r "
                                                                  "FROM galaxy_features GROUP BY 1"}})] * args.requests,
        }
        for reqs in endpoints.values():  # warm-up: the vector matrix, the id maps, imports
            asyncio.run(load(url, reqs[:2], 1))
        rows = []
        rss_start = rss_mib(proc.pid)
        for name, reqs in endpoints.items():
            before = rss_mib(proc.pid)
            lat, errors, wall = asyncio.run(load(url, reqs, args.concurrency))
            rows.append({"endpoint": name, "requests": len(reqs), "errors": errors,
                         "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                         "max_ms": float(lat.max()), "rps": len(reqs) / wall,
                         "rss_before_mib": before, "rss_after_mib": rss_mib(proc.pid)})
        print(f"\n{args.n:,} galaxies, {args.dim}-d vectors, {args.requests} requests per endpoint, "
              f"{args.concurrency} in flight; {os.cpu_count()} CPUs, {platform.python_version()}; "
              f"server RSS {rss_start:.0f} MiB after warm-up\n")
        print("| endpoint | requests | errors | p50 ms | p99 ms | max ms | req/s | RSS before -> after (MiB) |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| `{r['endpoint']}` | {r['requests']} | {r['errors']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                  f"{r['max_ms']:.0f} | {r['rps']:.1f} | {r['rss_before_mib']:.0f} -> {r['rss_after_mib']:.0f} |")
        if args.json:
            args.json.write_text(json.dumps({"n": args.n, "dim": args.dim, "rows": rows}, indent=1))
    finally:
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
