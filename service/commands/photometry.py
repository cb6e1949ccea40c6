"""``astrovision photometry``: cross-match stored galaxies against a catalogue file or SDSS, or plan it.

* ``astrovision photometry match [--catalog FILE] [--shard S ...]`` writes the ``photometry`` table for
  every shard (or the named ones), with the same code the Dagster asset runs.
* ``astrovision photometry plan --coords CSV`` prints how many SDSS requests a cross-match of those
  positions needs, how many are cached, and the time at the configured rate, without a request.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from features.errors import InputError

__all__ = ["register"]


def _sdss_config(args: argparse.Namespace):
    from features.photometry import SDSSConfig

    return SDSSConfig(batch_size=args.batch_size, search_radius_arcsec=args.search_radius,
                      min_interval_s=1.0 / args.rate if args.rate > 0 else 0.0)


def _cmd_match(args: argparse.Namespace) -> int:
    from features.photometry import (
        MatchConfig,
        QualityConfig,
        SkyServerClient,
        photometry_from_catalogue,
        photometry_from_sdss,
        read_catalogue,
    )
    from stages.photometry import catalogue_for_source
    from warehouse import Warehouse, quote

    wh = Warehouse.open()
    if not wh.exists("galaxies"):
        raise InputError(f"no galaxies in {wh.root}; run `astrovision ingest` or `astrovision demo` first")
    shards = args.shard or sorted(set(wh.read("galaxies", columns=["shard"]).column("shard").to_pylist()))
    mapping = json.loads(args.column_map) if args.column_map else None
    match = MatchConfig(radius_arcsec=args.radius, search_radius_arcsec=args.search_radius)
    quality = QualityConfig(mag_err_max=args.mag_err_max)
    for shard in shards:
        gal = wh.read("galaxies", columns=["galaxy_id", "source", "ra", "dec", "redshift"],
                      where=f"shard = {quote(shard)}").sort_by("galaxy_id")
        if gal.num_rows == 0:
            raise InputError(f"shard {shard!r} has no galaxies")
        ids = gal.column("galaxy_id").to_pylist()
        ra, dec, z = (np.asarray(gal.column(c).to_numpy(zero_copy_only=False), float) for c in ("ra", "dec", "redshift"))
        path = catalogue_for_source(wh, gal.column("source")[0].as_py(), args.catalog or "")
        if path is not None:
            res = photometry_from_catalogue(ids, ra, dec, z, catalogue=read_catalogue(path, mapping), shard=shard,
                                            match=match, quality=quality)
        else:
            client = SkyServerClient(wh.cache_dir / "sdss", _sdss_config(args))
            res = photometry_from_sdss(ids, ra, dec, z, client=client, shard=shard, match=match, quality=quality)
        wh.upsert("photometry", res.table)
        s = res.summary
        print(f"{shard}: {s['n_galaxies']} galaxies from {s['source']}: matched {s['match_rate']:.1%}, "
              f"quality ok {s['quality_pass_rate']:.1%}, median g-r {s['median_g_r']:.3f}")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from features.photometry import SkyServerClient
    from features.photometry.catalogue import read_table
    from warehouse import Warehouse

    raw = read_table(args.coords)
    if "ra" not in raw or "dec" not in raw:
        raise InputError(f"{args.coords}: needs columns ra and dec (has {list(raw)})")
    wh = Warehouse.open()
    client = SkyServerClient(wh.cache_dir / "sdss", _sdss_config(args))
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
