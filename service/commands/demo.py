"""``astrovision demo``: render the synthetic survey, ingest it and materialize every asset, offline."""

from __future__ import annotations

import argparse
import json
import sys
import time

import polars as pl

from features.weights import WeightsOrigin
from stages.photometry import demo_catalogue
from stages.sources import register_source, source_lock
from warehouse import Warehouse

__all__ = ["register", "run_demo"]

NEXT_STEPS = """\
Try next:
  astrovision tables
  astrovision sql "SELECT label_name, count(*) AS n FROM galaxies GROUP BY 1 ORDER BY 2 DESC"
  astrovision show {name}:000001 --png galaxy.png
  astrovision similar {name}:000001 -k 8 --montage lookalikes.png
  astrovision ui            # lineage, runs, checks and re-materialization in the Dagster UI
"""


def _summary(wh: Warehouse, elapsed: float, contact_sheet: str | None, source: str = "demo") -> str:
    lines = [f"\nDemo finished in {elapsed / 60:.1f} min; warehouse at {wh.root}", "", "Tables:"]
    for name in wh.tables():
        ds = wh.dataset(name)
        lines.append(f"  {name:<28} {ds.count_rows():>7} rows  (version {ds.version})")
    emb = [t for t in wh.tables() if t.startswith("embeddings_")]
    for table in emb:
        origin = wh.sql(f"SELECT DISTINCT encoder, weights_origin FROM {table}").to_dicts()
        for row in origin:
            note = ("RANDOM weights: a named baseline, not DINOv2 (put DINOv2 weights in place to use them)"
                    if WeightsOrigin(row["weights_origin"]).is_random else f"weights from {row['weights_origin']}")
            lines.append(f"\nEmbeddings: {row['encoder']} - {note}")
    if wh.exists("models"):
        models = wh.read_polars("models")
        if models.height:
            lines.append("\nModels (test split):")
            for row in models.sort("name").iter_rows(named=True):
                metrics = json.loads(row.get("metrics_json") or "{}")
                bal = metrics.get("test_balanced_accuracy", metrics.get("balanced_accuracy"))
                extra = f"  [{row['weights_origin']}]" if row.get("weights_origin") else ""
                bal_s = f"{bal:.3f}" if isinstance(bal, int | float) else "n/a"
                lines.append(f"  {row['name']:<18} v{row['version']}  balanced accuracy {bal_s}{extra}")
    if contact_sheet:
        lines.append(f"\nContact sheet: {contact_sheet}")
    return "\n".join(lines) + "\n\n" + NEXT_STEPS.format(name=source)


def run_demo(wh: Warehouse, n: int | None = None, seed: int = 0, shard_size: int | None = None,
             groups: list[str] | None = None, progress: bool = True, replace: bool = False,
             name: str | None = None) -> int:
    """Render, register (as source ``name``, default ``demo``), materialize and summarise the demo survey;
    returns the exit status. ``replace`` replaces a source of that name holding other data (another size
    or seed; see :func:`stages.sources.register_source`)."""
    from dagster_project.runner import run_pipeline
    from features.sources.synthetic import DEFAULT_N, SyntheticSurvey, contact_sheet

    t0 = time.perf_counter()
    survey = SyntheticSurvey(n=n or DEFAULT_N, seed=seed)
    survey.name = name
    catalogue = demo_catalogue(wh, survey)
    sheet = wh.root / "demo_contact_sheet.png"
    contact_sheet(survey, sheet)
    params = {"n": len(survey), "seed": seed, "photometry_catalog": str(catalogue)}
    with source_lock(wh, survey.name, on_wait=lambda msg: print(msg, file=sys.stderr, flush=True)):
        shards = register_source(wh, survey, shard_size=shard_size, params=params, replace=replace)
        print(f"demo: {len(survey)} synthetic galaxies (seed {seed}) in {len(shards)} shard(s) -> {wh.root}")
        report = run_pipeline(wh, shards, groups=groups, progress=progress)
    print(_summary(wh, time.perf_counter() - t0, str(sheet), survey.name))
    if report.checks_failed:
        print("Checks that failed:\n  " + "\n  ".join(report.checks_failed))
        if any("balanced_accuracy_floor" in c for c in report.checks_failed):
            print("  (a model marked [random init] above has no pretrained weights on this machine and is "
                  "expected to miss its floor)")
    if report.failed:
        print("Steps that failed:\n  " + "\n  ".join(f"{k}: {v}" for k, v in report.failed.items()))
        return 1
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    pl.Config.set_tbl_hide_dataframe_shape(True)
    return run_demo(Warehouse.open(), n=args.n, seed=args.seed, shard_size=args.shard_size,
                    groups=args.group or None, replace=args.replace, name=args.name)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on the synthetic demo survey (offline)")
    p.add_argument("--n", type=int, help="number of galaxies (default: the documented demo size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-size", type=int, help="galaxies per shard")
    p.add_argument("--group", action="append", help="only assets of this Dagster group (repeatable)")
    p.add_argument("--name", help="source name, prefix of the galaxy ids (default: demo)")
    p.add_argument("--replace", action="store_true",
                   help="replace a source of this name holding other data (another --n or --seed)")
    p.set_defaults(func=_cmd_demo)
