"""``astrovision ingest`` and ``astrovision materialize``: register a named source and run its assets.

The glue (name checks, fingerprints, the ``sources`` row, the per-name lock) lives in
:mod:`stages.sources`; this module parses arguments and reports.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from features.errors import InputError
from features.sources import SOURCE_KINDS, make_source
from features.sources.ranges import check_pxscale
from features.sources.sky import check_nside

from .execution import add_execution_args, execution_from
from .home import warehouse_of

__all__ = ["register"]


ABSENT_CHECK = "photometry:available"
"""The WARN check that fails when a shard's photometry could not be had (a flagged absence)."""


def _print_report(report, log=print) -> int:
    n_ok = len(report.succeeded)
    log(f"{n_ok} materialization(s) succeeded, {len(report.failed)} step(s) failed")
    absent = [c for c in report.checks_failed if c.startswith(ABSENT_CHECK + " ")]
    for check in report.checks_failed:
        if check not in absent:
            log(f"  check failed: {check}")
    if absent:
        reasons = sorted({str(meta.get("photometry_absent")) for name, meta in report.metadata.items()
                          if name.startswith("photometry[") and meta.get("photometry_absent") not in (None, "no")})
        log(f"photometry is absent for {len(absent)} shard(s), flagged in the photometry table "
            f"(check {ABSENT_CHECK}): {'; '.join(reasons) or 'see the check'}; pass --require-photometry "
            "to make this an error")
    return 0 if report.ok else 1


def _pxscale(text: str) -> float | None:
    """``--pxscale``: arcsec per pixel, or ``unknown`` (None); anything else is an InputError."""
    return None if text.strip().lower() == "unknown" else check_pxscale(text, "--pxscale")


def _refuse_photometry_without_positions(source) -> None:
    """``--require-photometry`` of a source without any position: refused before anything runs."""
    ra, dec = source.positions()
    import numpy as np

    if not (np.isfinite(ra) & np.isfinite(dec)).any():
        raise InputError(f"--require-photometry: source {source.name!r} has no sky positions (no ra / dec in its "
                         "catalogue), so no photometry can be cross-matched; add positions, or ingest without "
                         "--require-photometry to store its absence flagged")


def _cmd_ingest(args: argparse.Namespace) -> int:
    from dagster_project.runner import run_pipeline
    from stages.photometry import demo_catalogue
    from stages.sources import register_source, source_lock

    if args.healpix_nside is not None:
        check_nside(args.healpix_nside)  # before anything is written
    execution = execution_from(args)
    wh = warehouse_of(args)
    params: dict[str, Any] = {}
    if args.label_column:
        params["label_column"] = args.label_column
    if args.photometry_catalog:
        params["photometry_catalog"] = str(Path(args.photometry_catalog).resolve())
    if args.pxscale is not None:
        params["pxscale"] = _pxscale(args.pxscale)
    if args.source == "demo":
        params["seed"] = args.seed
        if args.n:
            params["n"] = args.n
    source = make_source(args.source, path=args.path, catalog=args.catalog, name=args.name, **params)
    if args.require_photometry and "photometry_catalog" not in params and args.source != "demo":
        _refuse_photometry_without_positions(source)
    with source_lock(wh, source.name, timeout=args.lock_timeout,
                     on_wait=lambda msg: print(msg, file=sys.stderr, flush=True)):
        if args.source == "demo":
            params["n"] = len(source)  # recorded, so a shard can be rebuilt from its key alone
            if "photometry_catalog" not in params:
                params["photometry_catalog"] = str(demo_catalogue(wh, source))  # the demo has no SDSS counterpart
        shards = register_source(wh, source, path=args.path, catalog=args.catalog,
                                 shard_size=args.shard_size, params=params, replace=args.replace,
                                 healpix_nside=args.healpix_nside)
        print(f"ingesting {len(source)} galaxies from {args.source} source {source.name!r} in {len(shards)} "
              f"shard(s) into {wh.root}")
        run_config = {"ops": {"photometry": {"config": {"require": True}}}} if args.require_photometry else None
        report = run_pipeline(wh, shards, groups=None if args.all else ["ingest"], execution=execution,
                              run_config=run_config)
    status = _print_report(report)
    print(f"tables: {json.dumps(wh.versions())}")
    return status


def _cmd_materialize(args: argparse.Namespace) -> int:
    from dagster_project.runner import run_pipeline
    from stages.sources import ingested_shards, sky_shards_in_cone, source_locks

    execution = execution_from(args)
    wh = warehouse_of(args)
    shards = ingested_shards(wh, args.shard)
    if args.cone:
        region = set(sky_shards_in_cone(wh, *args.cone))
        shards = [s for s in shards if s in region]
        if not shards:
            raise InputError(f"no ingested sky shard overlaps the cone {args.cone[2]:g} arcsec around "
                             f"({args.cone[0]:g}, {args.cone[1]:g})")
    # the shards' source locks, held here so this command's run processes share them instead of queueing
    with source_locks(wh, {s.split("-", 1)[0] for s in shards},
                      on_wait=lambda msg: print(msg, file=sys.stderr, flush=True)):
        report = run_pipeline(wh, shards, groups=args.group or None, execution=execution)
    return _print_report(report)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="register a source and materialize its galaxies (and more with --all)")
    p.add_argument("--source", choices=SOURCE_KINDS, required=True, help="the kind of source (which reader)")
    p.add_argument("--path", help="Galaxy10_DECals.h5, or the image directory of a folder source")
    p.add_argument("--name", help="the source's name, prefix of its galaxy ids (default: demo, galaxy10, or a "
                                  "folder's directory name); lower-case letters, digits, '_', '.'")
    p.add_argument("--replace", action="store_true",
                   help="the name is registered for other data: delete that source's rows, ingest this instead")
    p.add_argument("--lock-timeout", type=float, default=None,
                   help="seconds to wait while another process ingests the same source (default: no limit)")
    p.add_argument("--catalog", help="CSV catalogue of a folder source (default <path>/catalog.csv)")
    p.add_argument("--label-column", help="catalogue column used as the class label (folder source)")
    p.add_argument("--pxscale", help="folder source: arcsec per pixel, or 'unknown' for resampled cutouts")
    p.add_argument("--photometry-catalog",
                   help="CSV/FITS/Parquet photometry catalogue to cross-match instead of querying SDSS")
    p.add_argument("--shard-size", type=int, help="galaxies per shard (Dagster partition)")
    p.add_argument("--healpix-nside", type=int, default=None,
                   help="shard by sky position: one shard per HEALPix pixel at this nside (a power of two)")
    p.add_argument("--n", type=int, help="demo source: number of galaxies")
    p.add_argument("--seed", type=int, default=0, help="demo source: seed")
    p.add_argument("--all", action="store_true", help="materialize every asset, not only the ingest group")
    p.add_argument("--require-photometry", action="store_true",
                   help="with --all: fail (exit 1) when photometry cannot be had (SDSS unreachable offline, no "
                        "positions) instead of storing it as a flagged absence and saying so")
    add_execution_args(p)
    p.set_defaults(func=_cmd_ingest)

    m = sub.add_parser("materialize", help="materialize assets for the ingested shards")
    m.add_argument("--group", action="append", help="only this Dagster group (repeatable)")
    m.add_argument("--shard", action="append", help="only this shard (repeatable)")
    m.add_argument("--cone", nargs=3, type=float, metavar=("RA", "DEC", "RADIUS_ARCSEC"),
                   help="only the sky shards (HEALPix pixels) overlapping this cone: one region again")
    add_execution_args(m)
    m.set_defaults(func=_cmd_materialize)
