"""The steps that issue 25 gave a process pool, serial against pooled, on a demo warehouse: wall, CPU, equality.

Usage (a COPY of a demo home: the maps and the analysis rows are rewritten; each measurement is a process of
its own, under :func:`proc_profile.run_measured`, so the pool workers' CPU counts)::

    cp -r /tmp/demo-home /tmp/pools-home
    .venv/bin/python benchmarks/bench_step_pools.py --home /tmp/pools-home

Steps: ``pseudo_labels`` (the Otsu labels of every galaxy, computed, not written), ``embedding_maps``
(:func:`stages.analysis.build_maps`), ``representation_analysis`` (:func:`stages.analysis.analyse`). Each
is run with ``--workers 1`` (the serial path of before) and with the machine's cores, one after the other;
the outputs of the two are compared exactly (a digest of every value).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("pseudo_labels", "embedding_maps", "representation_analysis")


def _cpu_self() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def _digest(obj: object) -> str:
    return hashlib.sha256(pickle.dumps(obj)).hexdigest()[:16]


def run_step(home: Path, step: str, workers: int) -> dict:
    """Run ``step`` once in this process; wall seconds, this process's CPU before the step, output digest."""
    sys.path.insert(0, str(ROOT))
    from warehouse import Warehouse

    wh = Warehouse.open(home)
    if step == "pseudo_labels":
        from features.parallel import ordered_pool
        from stages.segmentation import _pseudo_label_row

        meta = wh.read("images", columns=["galaxy_id", "image_kind", "bands"]).to_pydict()
        cpu0, t0 = _cpu_self(), time.perf_counter()
        rows = []
        with ordered_pool(workers, preload=["stages.segmentation"]) as pmap:
            for start in range(0, len(meta["galaxy_id"]), 256):
                ids = meta["galaxy_id"][start:start + 256]
                args = [(im, meta["image_kind"][start + k], meta["bands"][start + k], None)
                        for k, im in enumerate(wh.read_images(ids))]
                rows += pmap(_pseudo_label_row, args)
        out = [json.dumps(r, default=lambda b: hashlib.sha256(b).hexdigest()) for r in rows]
    elif step == "embedding_maps":
        from stages.analysis import build_maps

        cpu0, t0 = _cpu_self(), time.perf_counter()
        build_maps(wh, workers=workers)
        t = wh.read("embedding_maps", columns=["galaxy_id", "encoder", "method", "coords", "fitted"])
        out = t.sort_by([("encoder", "ascending"), ("method", "ascending"), ("galaxy_id", "ascending")]).to_pylist()
    else:
        from stages.analysis import analyse

        cpu0, t0 = _cpu_self(), time.perf_counter()
        out = json.dumps(analyse(wh, workers=workers).rows.to_pylist(), default=str)
    return {"wall_s": time.perf_counter() - t0, "cpu_before_s": cpu0, "digest": _digest(out)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True, help="a copy of a demo warehouse (rewritten)")
    ap.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the pooled run's processes")
    ap.add_argument("--one", nargs=3, metavar=("STEP", "WORKERS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        Path(args.one[2]).write_text(json.dumps(run_step(args.home, args.one[0], int(args.one[1]))))
        return 0
    sys.path.insert(0, str(Path(__file__).parent))
    from proc_profile import run_measured

    cores = os.cpu_count() or 1
    print(f"# {cores} cores, load average {os.getloadavg()[0]:.1f} at the start")
    print("| step | workers | wall s | CPU s | CPU / wall / cores | output digest |")
    print("|---|---|---|---|---|---|")
    result = args.home.parent / f".{args.home.name}-step.json"
    for step in args.steps:
        digests = set()
        for workers in (1, args.workers):
            result.unlink(missing_ok=True)
            measured = run_measured([sys.executable, __file__, "--home", str(args.home), "--one", step, str(workers),
                                     str(result)])
            if measured["rc"] != 0 or not result.exists():
                print(f"| {step} | {workers} | failed (exit {measured['rc']}) | | | |")
                continue
            r = json.loads(result.read_text())
            cpu = measured["cpu_s"] - r["cpu_before_s"]
            digests.add(r["digest"])
            print(f"| {step} | {workers} | {r['wall_s']:.1f} | {cpu:.1f} | {cpu / r['wall_s'] / cores:.0%} | "
                  f"{r['digest']} |", flush=True)
        print(f"<!-- {step}: outputs {'identical' if len(digests) == 1 else 'DIFFER'} -->", flush=True)
    result.unlink(missing_ok=True)
    print(f"# load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
