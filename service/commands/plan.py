"""``astrovision plan``: expected wall time and storage of a catalogue on N workers (:mod:`stages.plan`)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from dagster_project.executors import EXECUTORS, cores
from stages.plan import COSTS_FILE, Plan, StageProjection, load_costs, plan, project_stages

__all__ = ["format_plan", "format_stages", "register"]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def format_plan(p: Plan, measured: dict) -> str:
    """The plan as the text ``astrovision plan`` prints."""
    lines = [
        f"{p.galaxies:,} galaxies in {p.shards:,} shard(s) of {p.shard_size:,} on {p.workers} worker(s) x "
        f"{p.cores_per_worker:g} core(s), executor {p.executor}; stages: {', '.join(p.stages)}",
        f"  one full shard: {_duration(p.shard_seconds)} (start-up included)",
        f"  start-up: {_duration(p.start_s)}; shard runs: {_duration(p.shards_wall_s)}; "
        f"unpartitioned assets after them: {_duration(p.serial_wall_s)}",
        f"  expected wall time: {_duration(p.wall_s)} ({p.core_hours:,.1f} core-hours of work)",
        f"  expected storage: {_size(p.bytes_total)}"
        + (" (" + ", ".join(f"{t} {_size(b)}" for t, b in p.bytes_by_table.items()) + ")" if p.bytes_by_table else ""),
    ]
    if measured:
        lines.append(f"  costs measured {measured.get('when', '?')} on {measured.get('on', '?')} "
                     f"({measured.get('machine', '?')}); model and assumptions: docs/benchmarks_scale.md")
    return "\n".join(lines)


def format_stages(rows: list[StageProjection], galaxies: int, shard_size: int, measured: dict) -> str:
    """The per-stage projection of the default job as text (:func:`stages.plan.project_stages`)."""
    wall, cpu = sum(r.wall_s for r in rows), sum(r.cpu_s for r in rows)
    lines = [f"every stage of the default job (ingest --all: one worker in process, shards of {shard_size:,}, "
             "the demo preset's training budgets), one after another; 'capped' is the galaxies a training stage "
             "trains on, or for embeddings the random_vits14 baseline's sample:",
             f"  {'stage':<24} {'runs':>5} {'capped':>14} {'wall':>10} {'CPU':>10}"]
    for r in rows:
        trains = f"{r.trained:,}" + (f" (cap {r.cap:,})" if r.cap else "") if r.trained else ""
        lines.append(f"  {r.stage:<24} {r.runs:>5} {trains:>14} {_duration(r.wall_s):>10} {_duration(r.cpu_s):>10}")
    lines.append(f"  {'total':<24} {'':>5} {'':>14} {_duration(wall):>10} {_duration(cpu):>10}"
                 f"  ({galaxies:,} galaxies)")
    if measured:
        lines.append(f"  per-stage costs fitted on {measured.get('on', '?')} ({measured.get('machine', '?')}; "
                     f"{measured.get('command', '?')}); see docs/benchmarks.md, Galaxy10 rehearsal")
    return "\n".join(lines)


def _cmd_plan(args: argparse.Namespace) -> int:
    costs = load_costs(args.costs)
    cores_per_worker = args.cores_per_worker or cores() / max(args.workers, 1)  # plan() refuses workers < 1
    p = plan(costs, args.galaxies, args.shard_size, args.workers, cores_per_worker=cores_per_worker,
             executor=args.executor, stages=args.stage)
    rows = project_stages(costs, args.galaxies, args.shard_size) if costs.stage_costs else []
    if args.format == "json":
        print(json.dumps({**asdict(p), "bytes_total": p.bytes_total, "per_stage": [asdict(r) for r in rows]},
                         indent=2))
    else:
        print(format_plan(p, costs.measured))
        if rows:
            print(format_stages(rows, args.galaxies, args.shard_size, costs.stage_costs_measured))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="expected wall time and storage of a catalogue on N workers (measured costs)")
    p.add_argument("--galaxies", type=int, required=True, help="catalogue size")
    p.add_argument("--shard-size", type=int, default=200, help="galaxies per shard (default 200)")
    p.add_argument("--workers", type=int, default=1, help="shard runs at once (default 1)")
    p.add_argument("--cores-per-worker", type=float, default=None,
                   help="cores of each worker (default: this machine's cores / --workers)")
    p.add_argument("--executor", choices=EXECUTORS, default="in_process",
                   help="whose measured run start-up to count (default in_process)")
    p.add_argument("--stage", action="append",
                   help="only this stage (repeatable; default every measured one: galaxies, morphometrics, ...)")
    p.add_argument("--costs", default=None, help=f"measured costs file (default {COSTS_FILE.name} in stages/)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=_cmd_plan)
