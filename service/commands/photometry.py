"""``astrovision photometry``: cross-match stored galaxies against a catalogue file or SDSS, or plan it.

* ``astrovision photometry match [--catalog FILE] [--shard S ...]`` writes the ``photometry`` table for
  every shard (or the named ones): a ``features_job`` run of the ``photometry`` asset per shard, its
  options passed as the asset's run config.
* ``astrovision photometry plan --coords CSV`` prints how many SDSS requests a cross-match of those
  positions needs, how many are cached, and the time at the configured rate, without a request.
"""

from __future__ import annotations

import argparse
import json
import sys

from features.errors import InputError

from .home import warehouse_of

__all__ = ["register"]


def _sdss_config(args: argparse.Namespace):
    from features.photometry import SDSSConfig

    return SDSSConfig(batch_size=args.batch_size, search_radius_arcsec=args.search_radius,
                      min_interval_s=1.0 / args.rate if args.rate > 0 else 0.0)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _cmd_match(args: argparse.Namespace) -> int:
    from dagster_project.runner import run_pipeline
    from service.cli import USER_ERRORS
    from stages.photometry import ShardPhotometry
    from stages.sources import ingested_shards

    wh = warehouse_of(args)
    shards = ingested_shards(wh, args.shard)
    if args.column_map:
        try:
            json.loads(args.column_map)
        except json.JSONDecodeError as exc:
            raise InputError(f"--column-map is not JSON: {exc}") from None
    config = {"catalog": args.catalog or "", "column_map_json": args.column_map or "", "radius_arcsec": args.radius,
              "search_radius_arcsec": args.search_radius, "mag_err_max": args.mag_err_max,
              "batch_size": args.batch_size, "requests_per_second": args.rate,
              "require": True}  # asked for by name: unreachable SDSS is this command's error, not an absence
    failures: list[str] = []
    report = run_pipeline(wh, shards, groups=["features"], assets=["photometry"], progress=False,
                          run_config={"ops": {"photometry": {"config": config}}}, log=failures.append)
    message = report.user_error(USER_ERRORS)
    if message:
        raise InputError(message)
    for shard in shards:
        if f"photometry[{shard}]" not in report.metadata:
            continue
        s = ShardPhotometry.from_metadata(report.metadata[f"photometry[{shard}]"])
        print(f"{shard}: {s.n_galaxies} galaxies from {s.source}: matched {_pct(s.match_rate)}, "
              f"quality ok {_pct(s.quality_pass_rate)}, median g-r {_num(s.median_g_r)}")
    for line in failures:
        print(line, file=sys.stderr)
    for check in report.checks_failed:
        print(f"  check failed: {check}")
    return 0 if report.ok else 1


def _cmd_plan(args: argparse.Namespace) -> int:
    from features.photometry import SkyServerClient
    from features.photometry.catalogue import read_table

    raw = read_table(args.coords)
    if "ra" not in raw or "dec" not in raw:
        raise InputError(f"{args.coords}: needs columns ra and dec (has {list(raw)})")
    wh = warehouse_of(args)
    client = SkyServerClient(wh.cache_dir / "sdss", _sdss_config(args))
    import numpy as np

    est = client.estimate(np.asarray(raw["ra"], float), np.asarray(raw["dec"], float), latency_s=args.latency)
    json.dump(est, sys.stdout, indent=2)
    print()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``photometry match`` and ``photometry plan`` to the CLI."""
    p = sub.add_parser("photometry", help="SDSS-like photometry: cross-match galaxies (catalogue file or SDSS)")
    ps = p.add_subparsers(dest="photometry_command", metavar="ACTION")

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--batch-size", type=int, default=25, help="SDSS positions per request (default 25)")
        q.add_argument("--rate", type=float, default=1.0, help="SDSS requests per second (default 1)")
        q.add_argument("--search-radius", type=float, default=3.0, help="search radius in arcsec (default 3)")

    m = ps.add_parser("match", help="write the photometry table for every shard (or --shard)")
    m.add_argument("--catalog", help="catalogue file (CSV/FITS/Parquet); default: the source's own, else SDSS")
    m.add_argument("--column-map", help='JSON {"file column": "canonical column"}')
    m.add_argument("--shard", action="append", help="only this shard (repeatable)")
    m.add_argument("--radius", type=float, default=1.5, help="match radius in arcsec (default 1.5)")
    m.add_argument("--mag-err-max", type=float, default=0.2, help="largest accepted magnitude error (default 0.2)")
    common(m)
    m.set_defaults(func=_cmd_match)

    pl = ps.add_parser("plan", help="requests and time an SDSS cross-match of a coordinate file needs")
    pl.add_argument("--coords", required=True, help="CSV/Parquet/FITS with ra, dec columns")
    pl.add_argument("--latency", type=float, default=0.0, help="assumed seconds of server time per request")
    common(pl)
    pl.set_defaults(func=_cmd_plan)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
