"""Photometry benchmark: SDSS request plan and client cost for all of Galaxy10, catalogue-path speed.

No network. Three measurements, printed as a markdown table for docs/benchmarks_photometry.md:

1. **Plan** (the client's own accounting, no request): requests and minimum time of a full Galaxy10
   DECaLS cross-match (17,736 positions from ``../shared/data/galaxy10/Galaxy10_coord.csv``) at several
   batch sizes and request rates; the time is ``requests / rate`` (server time adds to it when a
   request takes longer than the rate interval; retries come on top).
2. **Replay**: the same cross-match through the real client (astroquery -> requests -> HTTP) against a
   local stand-in for SkyServer that answers every batch at once with one object 0.3" from each
   position, rate limit off: the client's own overhead per request (build SQL, HTTP, parse, cache
   write), then the resumed run served entirely from the cache (the baseline ratio).
3. **Catalogue path**: the same galaxies against a catalogue file of 17,736 counterparts plus 50,000
   unrelated objects (read, validate, KD-tree match, quality cuts).

Run: ``.venv/bin/python benchmarks/bench_photometry.py [--quick]``.
"""

from __future__ import annotations

import argparse
import http.server
import re
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features.photometry import (
    CANONICAL,
    SDSSConfig,
    SkyServerClient,
    photometry_from_catalogue,
    photometry_from_sdss,
    read_catalogue,
)

COORDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "galaxy10" / "Galaxy10_coord.csv"
_VALUES = re.compile(r"\((\d+),(-?[\d.]+),(-?[\d.]+)\)")
_HEADER = ["up_id", "sep_arcsec", *CANONICAL]


def load_coords(limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Galaxy10 positions (ra, dec) in the HDF5 row order."""
    data = np.loadtxt(COORDS, delimiter=",", skiprows=1)
    if limit:
        data = data[:limit]
    return data[:, 1], data[:, 2]


def _answer(sql: str) -> str:
    """A SkyServer-format CSV with one clean galaxy 0.3" north of every position of the batch."""
    lines = ["#Table1", ",".join(_HEADER)]
    for i, ra, dec in _VALUES.findall(sql):
        ra_f, dec_f = float(ra), float(dec) + 0.3 / 3600
        objid = 1237650000000000000 + int(abs(ra_f) * 1e5) * 100 + int(i)
        mags = "18.5,17.0,16.3,15.9,15.6," + "0.05,0.005,0.004,0.004,0.01,"
        mags += "18.6,17.1,16.4,16.0,15.7," + "0.06,0.006,0.005,0.005,0.012," + "0.2,0.15,0.1,0.08,0.06,"
        lines.append(f"{i},0.3,{objid},{ra_f:.7f},{dec_f:.7f},3,1,{mags}2.5,7.1,0.45,null")
    return "\n".join(lines) + "\n"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        body = _answer(query["cmd"][0]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def bench_plan(ra: np.ndarray, dec: np.ndarray, cache: Path) -> list[str]:
    rows = ["| batch size | positions / request (mean) | longest URL (chars) | requests | time at 0.5 req/s | at 1 req/s | at 2 req/s |",
            "|---|---|---|---|---|---|---|"]
    for size in (10, 25, 50):
        est = SkyServerClient(cache, SDSSConfig(batch_size=size)).estimate(ra, dec)
        n = est["n_to_request"]
        times = " | ".join(f"{n / rate / 60:.1f} min" for rate in (0.5, 1.0, 2.0))
        rows.append(f"| {size} | {est['positions_per_batch']:.1f} | {est['max_url_chars']} | {n} | {times} |")
    return rows


def bench_replay(ra: np.ndarray, dec: np.ndarray, cache: Path) -> list[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        cfg = SDSSConfig(base_url=f"http://127.0.0.1:{server.server_address[1]}", min_interval_s=0.0)
        ids = [f"galaxy10:{i:05d}" for i in range(ra.size)]
        out = []
        for label in ("first run (every batch requested)", "resumed run (every batch cached)"):
            t0 = time.perf_counter()
            res = photometry_from_sdss(ids, ra, dec, client=SkyServerClient(cache, cfg))
            wall = time.perf_counter() - t0
            f = res.summary["fetch"]
            out.append((label, f, wall, res.summary["match_rate"]))
    finally:
        server.shutdown()
        server.server_close()
    base = out[0][2]
    rows = ["| run | requests | cached batches | client HTTP time | wall time | per request | vs first run | match rate |",
            "|---|---|---|---|---|---|---|---|"]
    for label, f, wall, rate in out:
        per = f"{1000 * wall / f['n_requests']:.1f} ms" if f["n_requests"] else "-"
        rows.append(f"| {label} | {f['n_requests']} | {f['n_cached']} | {f['http_s']:.1f} s | {wall:.1f} s | {per} | "
                    f"{wall / base:.2f}x | {rate:.3f} |")
    return rows


def bench_catalogue(ra: np.ndarray, dec: np.ndarray, tmp: Path) -> list[str]:
    rng = np.random.default_rng(0)
    n_extra = 50_000
    cols = {c: np.full(ra.size + n_extra, np.nan) for c in CANONICAL}
    cols["objid"] = np.arange(ra.size + n_extra, dtype=np.int64)
    cols["ra"] = np.concatenate([ra, rng.uniform(0, 360, n_extra)])
    cols["dec"] = np.concatenate([dec + rng.normal(0, 0.3, ra.size) / 3600,
                                  np.degrees(np.arcsin(rng.uniform(-1, 1, n_extra)))])
    cols["type"] = np.full(ra.size + n_extra, 3.0)
    cols["clean"] = np.ones(ra.size + n_extra)
    for b, m in zip("ugriz", [18.5, 17.0, 16.3, 15.9, 15.6]):
        cols[f"modelMag_{b}"] = m + rng.normal(0, 0.3, ra.size + n_extra)
        cols[f"modelMagErr_{b}"] = np.full(ra.size + n_extra, 0.02)
        cols[f"extinction_{b}"] = np.full(ra.size + n_extra, 0.1)
    path = tmp / "catalogue.parquet"
    pq.write_table(pa.table(cols), path)
    ids = [f"galaxy10:{i:05d}" for i in range(ra.size)]
    t0 = time.perf_counter()
    cat = read_catalogue(path)
    t1 = time.perf_counter()
    res = photometry_from_catalogue(ids, ra, dec, catalogue=cat)
    t2 = time.perf_counter()
    return ["| step | time |", "|---|---|",
            f"| read + validate {len(cat):,} rows (Parquet) | {t1 - t0:.2f} s |",
            f"| match {ra.size:,} galaxies + cuts + colours | {t2 - t1:.2f} s |",
            f"| match rate | {res.summary['match_rate']:.4f} |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="replay only the first 1,000 positions")
    args = parser.parse_args()
    ra, dec = load_coords()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"## Plan: full Galaxy10 cross-match ({ra.size:,} positions), no request\n")
        print("\n".join(bench_plan(ra, dec, tmp / "plan")))
        r_ra, r_dec = (ra[:1000], dec[:1000]) if args.quick else (ra, dec)
        print(f"\n## Replay through the real client against a local stand-in ({r_ra.size:,} positions)\n")
        print("\n".join(bench_replay(r_ra, r_dec, tmp / "replay")))
        print(f"\n## Catalogue-file path ({ra.size:,} galaxies)\n")
        print("\n".join(bench_catalogue(ra, dec, tmp)))


if __name__ == "__main__":
    main()
