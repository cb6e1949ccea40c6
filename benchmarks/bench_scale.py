"""Ingest + morphometrics with 1 and 2 workers: in process, parallel shard runs, Dask LocalCluster.

Writes a Galaxy10-format file from the 370 real GZ DECaLS stamps in ``../shared`` (``bench_ingest``),
then, for each mode and in one run (so the ratios share the machine's load), materializes
``galaxies`` + ``morphometrics`` per shard and ``duplicate_groups`` once into a fresh warehouse through
:func:`dagster_project.runner.run_pipeline`, and times it:

- ``in_process``, 1 worker: one shard after another in this process (the baseline);
- ``in_process``, 2 workers: 2 shard runs at once, each in its own run process with 1 core;
- ``dask``, 2 workers: 2 shard runs at once, every step a task on a ``LocalCluster`` of 2 workers.

From the baseline it measures the planner's costs (``stages/scale_costs.json``): core-seconds per
galaxy of each per-shard stage (Dagster's step durations x the cores the step had), seconds per galaxy
of the unpartitioned ``duplicate_groups``, bytes per galaxy of each table on disk; from every mode the
start-up of one run (a run's duration in Dagster's records minus its steps) plus what its per-shard
steps took beyond the baseline's core-seconds (:func:`step_extra_s`: for Dask, the process pool a
``morphometrics`` task starts). Then it prints a Markdown
table: measured wall time, ratio to the baseline, and the planner's expectation for each mode, plus
the planner's projections for Galaxy10 and 10^7 galaxies.

Usage (serialised with the other streams' heavy runs)::

    flock /tmp/astrovision-heavy.lock .venv/bin/python benchmarks/bench_scale.py --n 300 --shard-size 50
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_ingest import SHARED, make_file  # noqa: E402

ASSETS = ["galaxies", "duplicate_groups", "morphometrics"]
MODES = [("in_process", 1), ("in_process", 2), ("dask", 2)]
TABLES = {"galaxies": ["galaxies", "images"], "morphometrics": ["morphometrics"]}


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def step_seconds(instance, run_ids: list[str]) -> tuple[dict[str, float], list[float]]:
    """Seconds per step key summed over runs, and each run's duration minus its steps (its start-up)."""
    import dagster as dg

    steps: dict[str, float] = {}
    overheads = []
    for run_id in run_ids:
        started: dict[str, float] = {}
        inside = 0.0
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                started[event.step_key] = entry.timestamp
            elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                d = entry.timestamp - started.pop(event.step_key)
                steps[event.step_key] = steps.get(event.step_key, 0.0) + d
                inside += d
        record = instance.get_run_record_by_id(run_id)
        overheads.append((record.end_time or 0) - (record.start_time or 0) - inside)
    return steps, overheads


def run_mode(h5: Path, work: Path, shard_size: int, executor: str, workers: int, index: int = 0) -> dict:
    from dagster_project.executors import Execution, cores
    from dagster_project.runner import instance_for, run_pipeline
    from features.sources.galaxy10 import Galaxy10Source
    from stages.sources import register_source, source_lock
    from warehouse import Warehouse

    wh = Warehouse.open(work / f"home-{index}-{executor}-{workers}")  # a fresh warehouse per mode
    source = Galaxy10Source(h5)
    # As `astrovision ingest` does: the source lock held around registration and the runs, so the runs'
    # processes and the Dask workers (started inside it) see their ancestor holds it. Without it every
    # run (every Dask step) takes the lock itself, and the shards of one source run one after another.
    with source_lock(wh, source.name):
        shards = register_source(wh, source, path=str(h5), shard_size=shard_size)
        instance_for(wh).get_runs()  # the instance exists before the clock starts, in every mode
        load0 = os.getloadavg()[0]
        epoch0 = time.time()
        t0 = time.perf_counter()
        report = run_pipeline(wh, shards, assets=ASSETS, progress=False, log=lambda _: None,
                              execution=Execution.of(workers, executor))
        wall = time.perf_counter() - t0
    if not report.ok:
        raise SystemExit(f"{executor} x {workers} failed: {report.failed}")
    instance = instance_for(wh)
    steps, overheads = step_seconds(instance, report.run_ids)
    first = min(instance.get_run_record_by_id(r).start_time or epoch0 for r in report.run_ids)
    n = wh.count("morphometrics")
    assert n == wh.count("galaxies") == wh.count("images"), "rows lost"
    return {"executor": executor, "workers": workers, "wall_s": wall, "galaxies": n, "shards": len(shards),
            "steps_s": steps, "run_overhead_s": sorted(overheads)[len(overheads) // 2],
            "start_s": max(first - epoch0, 0.0),
            "cores_per_step": cores() // workers if workers > 1 else cores(),
            "load_before": load0, "load_after": os.getloadavg()[0],
            "bytes": {t: _dir_bytes(wh.root / "lance" / f"{t}.lance") for ts in TABLES.values() for t in ts}}


def step_extra_s(base: dict, run: dict, per_shard: dict[str, float], n: int) -> float:
    """Seconds per shard run that ``run``'s per-shard steps took beyond the baseline's core-seconds on its cores.

    0 for the baseline itself. For Dask it is what a step costs there and not in process: the worker
    process pool a ``morphometrics`` task starts (it measures in a process of its own, not in the Dask
    worker's thread) and anything else slower in a Dask worker. The planner adds it to the executor's
    per-run start-up, so the model carries what was measured. Never negative.
    """
    if run is base:
        return 0.0
    measured = sum(run["steps_s"][s] for s in per_shard)
    expected = sum(per_shard.values()) * n / run["cores_per_step"]
    return max(0.0, (measured - expected) / run["shards"])


def costs_from(runs: list[dict], n: int, work_note: str) -> dict:
    """The planner's costs file from the baseline run (stage costs, bytes) and every mode (start-up)."""
    from dagster_project.executors import cores
    from stages.plan import start_key

    base = runs[0]
    per_shard = {s: base["steps_s"][s] * base["cores_per_step"] / n for s in ("galaxies", "morphometrics")}
    overhead, start = {}, {}
    for r in runs:  # the first (fewest workers) measurement of each executor
        overhead.setdefault(r["executor"], r["run_overhead_s"] + step_extra_s(base, r, per_shard, n))
        start.setdefault(start_key(r["executor"], r["workers"]), r["start_s"])
    return {
        "core_seconds_per_galaxy": per_shard,
        "serial_seconds_per_galaxy": {"duplicate_groups": base["steps_s"]["duplicate_groups"] / n},
        "bytes_per_galaxy": {t: b / n for t, b in base["bytes"].items()},
        "tables_of_stage": {**TABLES, "duplicate_groups": []},
        "run_overhead_s": overhead,
        "start_s": start,
        "measured": {"when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "on": work_note,
                     "machine": f"{cores()} cores, load average {base['load_before']:.1f}-{runs[-1]['load_after']:.1f}",
                     "command": "benchmarks/bench_scale.py"},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="galaxies in the file")
    ap.add_argument("--shard-size", type=int, default=50)
    ap.add_argument("--out", type=Path, help="work directory (default: a new temporary one)")
    ap.add_argument("--costs", type=Path, default=ROOT / "stages" / "scale_costs.json",
                    help="where the measured costs go (the planner's default file)")
    ap.add_argument("--modes", default=",".join(f"{e}:{w}" for e, w in MODES),
                    help="executor:workers, comma-separated; the first is the baseline (default: all three)")
    args = ap.parse_args(argv)
    modes = [(m.split(":")[0], int(m.split(":")[1])) for m in args.modes.split(",")]
    if not SHARED.is_dir():
        raise SystemExit(f"needs the real stamps in {SHARED}")
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.getLogger("dagster").setLevel(logging.CRITICAL)

    from dagster_project.executors import cores
    from stages.plan import load_costs, plan

    work = Path(args.out or tempfile.mkdtemp(prefix="astrovision-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    h5 = work / "Galaxy10_DECals.h5"
    kind = make_file(h5, args.n)
    runs = []
    for index, (executor, workers) in enumerate(modes):
        runs.append(run_mode(h5, work, args.shard_size, executor, workers, index))
        print(f"{executor} x {workers}: {runs[-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)
    note = f"{args.n} galaxies ({kind}) in shards of {args.shard_size}, galaxies + morphometrics + duplicate_groups"
    args.costs.write_text(json.dumps(costs_from(runs, args.n, note), indent=2) + "\n")
    costs = load_costs(args.costs)

    base = runs[0]["wall_s"]
    per_shard = {s: runs[0]["steps_s"][s] * runs[0]["cores_per_step"] / args.n for s in ("galaxies", "morphometrics")}
    print(f"# {note}; {cores()} cores; load average {runs[0]['load_before']:.1f} before, "
          f"{runs[-1]['load_after']:.1f} after\n")
    print("| executor | workers | wall s | galaxies/s | speed-up vs 1 worker | planner s | planner / measured "
          "| start-up s | per-run start-up s | per-run step extra s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        p = plan(costs, args.n, args.shard_size, r["workers"], cores_per_worker=r["cores_per_step"],
                 executor=r["executor"])
        print(f"| {r['executor']} | {r['workers']} | {r['wall_s']:.1f} | {r['galaxies'] / r['wall_s']:.2f} | "
              f"{base / r['wall_s']:.2f}x | {p.wall_s:.1f} | {p.wall_s / r['wall_s']:.2f} | {r['start_s']:.1f} | "
              f"{r['run_overhead_s']:.1f} | {step_extra_s(runs[0], r, per_shard, args.n):.1f} |")
    print("\nPlanner projections (costs above; assumptions in docs/benchmarks_scale.md):\n")
    print("| catalogue | shard size | workers x cores | executor | wall time | core-hours | storage |")
    print("|---|---|---|---|---|---|---|")
    for n, shard, workers, k, executor in ((17_736, 200, 1, 2, "in_process"), (17_736, 200, 2, 1, "in_process"),
                                           (10_000_000, 1000, 100, 2, "dask"), (10_000_000, 1000, 100, 8, "dask")):
        p = plan(costs, n, shard, workers, cores_per_worker=k, executor=executor)
        print(f"| {n:,} | {shard} | {workers} x {k} | {executor} | {p.wall_s / 3600:.2f} h | {p.core_hours:,.0f} | "
              f"{p.bytes_total / 1e9:,.1f} GB |")
    print(f"\nmeasured costs: {json.dumps({k: v for k, v in costs.__dict__.items() if k != 'measured'})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
