"""``astrovision ingest`` and ``astrovision materialize``: register a source and run its assets."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from features.errors import InputError
from features.sources import SOURCE_NAMES, Source, make_source, shard_key
from warehouse import Warehouse, quote

__all__ = ["register", "register_source", "shard_keys"]


def shard_keys(name: str, n: int, shard_size: int) -> list[str]:
    """The shard keys covering ``n`` galaxies."""
    return [shard_key(name, i) for i in range(math.ceil(n / shard_size))]


def register_source(
    wh: Warehouse,
    source: Source,
    *,
    path: str | None = None,
    catalog: str | None = None,
    shard_size: int | None = None,
    params: dict[str, Any] | None = None,
) -> list[str]:
    """Validate a source, record it in the ``sources`` table and return its shard keys.

    Validation runs first, so a bad input leaves the warehouse exactly as it was.
    """
    source.validate()
    n = len(source)
    if n == 0:
        raise InputError(f"source {source.name!r} at {path} holds no galaxies")
    size = int(shard_size or source.default_shard_size)
    if size <= 0:
        raise InputError(f"--shard-size must be positive, got {size}")
    if wh.exists("sources"):
        old = wh.read("sources", where=f"source = {quote(source.name)}").to_pylist()
        if old and int(old[0]["shard_size"]) != size:
            raise InputError(
                f"source {source.name!r} is already ingested with shard size {old[0]['shard_size']}; "
                "use the same --shard-size or a new --home"
            )
    all_params = {**source.describe(), **(params or {})}
    path = str(Path(path).resolve()) if path else None
    catalog = str(Path(catalog).resolve()) if catalog else None
    wh.upsert(
        "sources",
        [{
            "source": source.name,
            "path": path,
            "catalog": catalog,
            "shard_size": size,
            "n_galaxies": n,
            "params_json": json.dumps(all_params, sort_keys=True),
        }],
    )
    return shard_keys(source.name, n, size)


def _print_report(report, log=print) -> int:
    n_ok = len(report.succeeded)
    log(f"{n_ok} materialization(s) succeeded, {len(report.failed)} step(s) failed")
    for check in report.checks_failed:
        log(f"  check failed: {check}")
    return 0 if report.ok else 1


def _cmd_ingest(args: argparse.Namespace) -> int:
    from dagster_project.runner import run_pipeline

    wh = Warehouse.open()
    params: dict[str, Any] = {}
    if args.label_column:
        params["label_column"] = args.label_column
    if args.photometry_catalog:
        params["photometry_catalog"] = str(Path(args.photometry_catalog).resolve())
    if args.pxscale is not None:
        params["pxscale"] = None if args.pxscale.lower() == "unknown" else float(args.pxscale)
    if args.source == "demo":
        params["seed"] = args.seed
        if args.n:
            params["n"] = args.n
    source = make_source(args.source, path=args.path, catalog=args.catalog, **params)
    if args.source == "demo":
        params["n"] = len(source)  # recorded, so a shard can be rebuilt from its key alone
        if "photometry_catalog" not in params:
            from service.commands.demo import demo_catalogue

            params["photometry_catalog"] = str(demo_catalogue(wh, source))  # the demo has no SDSS counterpart
    shards = register_source(wh, source, path=args.path, catalog=args.catalog,
                             shard_size=args.shard_size, params=params)
    print(f"ingesting {len(source)} galaxies from {args.source} in {len(shards)} shard(s) into {wh.root}")
    report = run_pipeline(wh, shards, groups=None if args.all else ["ingest"])
    status = _print_report(report)
    print(f"tables: {json.dumps(wh.versions())}")
    return status


def _cmd_materialize(args: argparse.Namespace) -> int:
    from dagster_project.runner import run_pipeline

    wh = Warehouse.open()
    if not wh.exists("galaxies"):
        raise InputError(f"nothing ingested in {wh.root}: run `astrovision ingest` or `astrovision demo` first")
    shards = sorted(set(wh.read("galaxies", columns=["shard"]).column("shard").to_pylist()))
    if args.shard:
        unknown = sorted(set(args.shard) - set(shards))
        if unknown:
            raise InputError(f"unknown shard(s) {unknown}; known: {shards}")
        shards = args.shard
    report = run_pipeline(wh, shards, groups=args.group or None)
    return _print_report(report)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="register a source and materialize its galaxies (and more with --all)")
    p.add_argument("--source", choices=SOURCE_NAMES, required=True)
    p.add_argument("--path", help="Galaxy10_DECals.h5, or the image directory of a folder source")
    p.add_argument("--catalog", help="CSV catalogue of a folder source (default <path>/catalog.csv)")
    p.add_argument("--label-column", help="catalogue column used as the class label (folder source)")
    p.add_argument("--pxscale", help="folder source: arcsec per pixel, or 'unknown' for resampled cutouts")
    p.add_argument("--photometry-catalog",
                   help="CSV/FITS/Parquet photometry catalogue to cross-match instead of querying SDSS")
    p.add_argument("--shard-size", type=int, help="galaxies per shard (Dagster partition)")
    p.add_argument("--n", type=int, help="demo source: number of galaxies")
    p.add_argument("--seed", type=int, default=0, help="demo source: seed")
    p.add_argument("--all", action="store_true", help="materialize every asset, not only the ingest group")
    p.set_defaults(func=_cmd_ingest)

    m = sub.add_parser("materialize", help="materialize assets for the ingested shards")
    m.add_argument("--group", action="append", help="only this Dagster group (repeatable)")
    m.add_argument("--shard", action="append", help="only this shard (repeatable)")
    m.set_defaults(func=_cmd_materialize)
