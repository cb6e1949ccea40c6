"""The same workload with the warehouse on a local S3-compatible server (moto) and on local disk.

Usage::

    flock /work/wt/bench.lock python benchmarks/bench_s3.py [--n 600] [--shard-size 200] [--repeats 1]

Builds a ``Galaxy10_DECals.h5`` of ``--n`` 256x256x3 stamps (``bench_ingest.make_file``: tiles of the
real DECaLS ring images in ../shared when present), starts ``moto.server`` on a free loopback port,
then runs, in a fresh child process per warehouse (local disk, then ``s3://bench/<run>``, repeated
``--repeats`` times in that order), exactly what ``astrovision ingest`` + ``materialize`` do:

1. ``ingest``: ``register_source`` + the Dagster ``galaxies`` / ``duplicate_groups`` runs;
2. ``morphometrics``: the ``morphometrics`` asset of every shard (statmorph, the process pool);
3. ``read``: a SQL join of ``galaxies`` with ``morphometrics`` and 100 random image reads by id.

Prints a Markdown table of the wall times with the S3/local ratio measured in the same run. The S3
server is in-memory on loopback: the ratio measures the object-store code path (HTTP requests, no
rename, conditional PUT commits, no local page cache), not a network.
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
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def child(path: str, home: str, shard_size: int) -> dict:
    from dagster_project.runner import run_pipeline
    from features.sources.galaxy10 import Galaxy10Source
    from stages.sources import register_source
    from warehouse import Warehouse

    wh = Warehouse.open(home)
    out: dict = {}
    t0 = time.perf_counter()
    shards = register_source(wh, Galaxy10Source(path), path=path, shard_size=shard_size)
    report = run_pipeline(wh, shards, groups=["ingest"], progress=False, log=lambda _: None)
    assert report.ok, report.failed
    out["ingest"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = run_pipeline(wh, shards, assets=["morphometrics"], progress=False, log=lambda _: None)
    assert report.ok, report.failed
    out["morphometrics"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    joined = wh.sql("SELECT count(*) AS n, avg(m.gini) AS gini FROM galaxies g JOIN morphometrics m USING (galaxy_id)")
    ids = wh.read("galaxies", columns=["galaxy_id"]).column("galaxy_id").to_pylist()
    rng = np.random.default_rng(1)
    for gid in rng.choice(ids, min(100, len(ids)), replace=False):
        wh.read_image(str(gid))
    out["read"] = time.perf_counter() - t0
    out["n"] = int(joined["n"][0])
    out["tables"] = wh.versions()
    return out


def _run_child(path: str, home: str, shard_size: int, env: dict[str, str]) -> dict:
    code = ("import json, sys; sys.path.insert(0, sys.argv[4]); from bench_s3 import child; "
            "print('RESULT ' + json.dumps(child(sys.argv[1], sys.argv[2], int(sys.argv[3]))))")
    proc = subprocess.run([sys.executable, "-c", code, path, home, str(shard_size), str(ROOT / "benchmarks")],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main() -> None:
    from bench_ingest import make_file
    from s3_server import s3_server

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--shard-size", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    base_env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    with tempfile.TemporaryDirectory() as tmp, s3_server() as server:
        h5 = Path(tmp) / "Galaxy10_DECals.h5"
        kind = make_file(h5, args.n)
        server.create_bucket("bench")
        results: dict[str, list[dict]] = {"local disk": [], "S3 (moto, loopback)": []}
        for r in range(args.repeats):
            local = _run_child(str(h5), str(Path(tmp) / f"local{r}"), args.shard_size, base_env)
            results["local disk"].append(local)
            s3_env = {**base_env, **server.env, "ASTROVISION_LOCAL_HOME": str(Path(tmp) / f"s3state{r}")}
            remote = _run_child(str(h5), f"s3://bench/run{r}", args.shard_size, s3_env)
            results["S3 (moto, loopback)"].append(remote)
            assert local["n"] == remote["n"] == args.n, (local["n"], remote["n"])
    print(f"\n{args.n} galaxies ({kind}), shards of {args.shard_size}, {os.cpu_count()} CPUs, "
          f"{args.repeats} repeat(s), median wall seconds:\n")
    stages = ["ingest", "morphometrics", "read"]
    med = {k: {s: float(np.median([r[s] for r in v])) for s in stages} for k, v in results.items()}
    print("| stage | local disk (s) | S3 on moto (s) | S3 / local |")
    print("|---|---|---|---|")
    for s in [*stages, "total"]:
        a = sum(med["local disk"].values()) if s == "total" else med["local disk"][s]
        b = sum(med["S3 (moto, loopback)"].values()) if s == "total" else med["S3 (moto, loopback)"][s]
        print(f"| {s} | {a:.1f} | {b:.1f} | {b / a:.2f} |")
    print("\nraw:", json.dumps(results))


if __name__ == "__main__":
    main()
