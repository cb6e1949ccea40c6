"""``astrovision export`` at scale: time, peak memory and file size per format (nothing is stored in git).

Builds a temporary warehouse of ``--n`` seeded synthetic galaxies (``galaxies``, ``morphometrics`` band
r, ``photometry``: the ``galaxy_features`` view joins them into 52 columns, some NULL) and an
embeddings table of ``--emb-n`` rows of ``--dim`` float32 (two fixed-length array columns), then
exports each relation to each format, every export in its own fresh process: wall time (profile pass
included), peak RSS of the export alone (the kernel's VmHWM reset once imports, the warehouse and a
DuckDB engine are open), the RSS at that point, and the file size. Tables are written in fragments
of 10,000 rows, as shard-by-shard writes leave them.

``--baseline ROWS`` adds, for VOTable and FITS, the first ROWS of ``galaxy_features`` written by
astropy's own writers (``Table.write``: the whole result read into memory first, VOTable as BINARY2)
and by the stream, in the same run, for the ratios.

Usage::

    .venv/bin/python benchmarks/bench_export.py --n 20000 --emb-n 5000 --baseline 5000   # a quick look
    flock /tmp/astrovision-heavy.lock .venv/bin/python benchmarks/bench_export.py --n 1000000 \
        --emb-n 50000 --baseline 100000

Prints a markdown table (pasted into docs/benchmarks.md); ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
FORMATS = {"votable": "vot", "fits": "fits", "parquet": "parquet", "csv": "csv"}
CHUNK = 100_000
FRAGMENT = 10_000


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _column(f: pa.Field, n: int, lo: int, rng: np.random.Generator, given: dict) -> pa.Array:
    if f.name in given:
        return pa.array(given[f.name], f.type)
    t = f.type
    if pa.types.is_floating(t):
        v = rng.normal(1.0, 0.5, n)
        v[rng.random(n) < 0.05] = np.nan  # some NaN, shown as NULL by the views
        return pa.array(v, t)
    if pa.types.is_integer(t):
        return pa.array(rng.integers(0, 100, n), t)
    if pa.types.is_boolean(t):
        return pa.array(rng.random(n) < 0.8, t)
    if pa.types.is_timestamp(t):
        return pa.array(np.full(n, 1_765_000_000_000_000, "datetime64[us]"), t)
    if pa.types.is_string(t):
        return pa.nulls(n, t) if f.nullable else pa.array(["x"] * n, t)
    return pa.nulls(n, t)


def build(root: Path, n: int, emb_n: int, dim: int, seed: int) -> None:
    """The synthetic warehouse: three per-galaxy tables of ``n`` rows and one embeddings table of ``emb_n``."""
    import lance

    from warehouse import Warehouse, schemas
    from warehouse.schemas.embeddings import embedding_spec

    wh = Warehouse.open(root)
    rng = np.random.default_rng(seed)
    prov = {"code_version": "bench", "run_id": "bench"}
    emb = embedding_spec("bench", dim)
    for name, rows in (("galaxies", n), ("morphometrics", n), ("photometry", n), (emb.name, emb_n)):
        spec = emb if name == emb.name else schemas.get(name)

        def batches(spec=spec, rows=rows, name=name):
            for lo in range(0, rows, CHUNK):
                k = min(CHUNK, rows - lo)
                ids = [f"bench:{i:07d}" for i in range(lo, lo + k)]
                given = {"galaxy_id": ids, "native_id": ids, "source": ["bench"] * k, "shard": ["bench-0"] * k,
                         "band": ["r"] * k, "label_name": [f"class {i % 10}" for i in range(lo, lo + k)],
                         "ra": rng.uniform(0, 360, k), "dec": rng.uniform(-60, 60, k),
                         "encoder": ["bench"] * k, **{c: [v] * k for c, v in prov.items()}}
                if name == emb.name:
                    for col in ("vector", "patch_mean"):
                        v = rng.normal(0, 1, (k, dim)).astype(np.float32)
                        given[col] = pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), dim)
                yield pa.record_batch([_column(f, k, lo, rng, given) for f in spec.schema], schema=spec.schema)

        reader = pa.RecordBatchReader.from_batches(spec.schema, batches())
        # fragments of FRAGMENT rows, as shard-by-shard writes leave them (one huge fragment is read whole)
        lance.write_dataset(reader, wh.table_uri(name), schema=spec.schema, mode="create",
                            max_rows_per_file=FRAGMENT, max_rows_per_group=FRAGMENT)
        log(f"  {name}: {rows:,} rows")


def _reset_peak() -> None:
    """Start the kernel's peak RSS (VmHWM) afresh, so the peak is the export's, not the imports'."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _peak_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(spec: dict) -> dict:
    """One export (or one astropy baseline) in this process; its figures."""
    from warehouse import Warehouse

    wh = Warehouse.open(spec["root"])
    out = Path(spec["out"])
    if spec["how"] == "stream":
        from stages.export import export
        from stages.export.job import limit_lance_readahead

        limit_lance_readahead()  # as the CLI does
        from warehouse.sql_engine import SQLEngine

        SQLEngine(wh)  # DuckDB and the views built once, so the baseline RSS includes them
        before = _rss_mib()
        _reset_peak()
        start = time.perf_counter()
        if spec.get("sql"):
            result = export(wh, out, spec["format"], sql=spec["sql"], progress=False)
        else:
            result = export(wh, out, spec["format"], table=spec["table"], progress=False)
        seconds = time.perf_counter() - start
        rows = result.rows
    else:  # astropy's own writer: the whole result in memory, then Table.write
        from astropy.table import Table

        from warehouse.sql_engine import SQLEngine

        engine = SQLEngine(wh)
        before = _rss_mib()
        _reset_peak()
        start = time.perf_counter()
        table = engine.run(spec.get("sql") or f'SELECT * FROM "{spec["table"]}"', limit=None).table
        t = Table({c: _numpy(table.column(c)) for c in table.column_names})
        del table
        if spec["format"] == "votable":  # BINARY2 as the stream writes (TABLEDATA is several times slower)
            t.write(out, format="votable", tabledata_format="binary2", overwrite=True)
        else:
            t.write(out, format="fits", overwrite=True)
        seconds = time.perf_counter() - start
        rows = len(t)
    peak = _peak_mib()
    return {"seconds": seconds, "peak_rss_mib": peak, "rss_before_mib": before, "bytes": out.stat().st_size,
            "rows": rows}


def _numpy(col: pa.ChunkedArray) -> np.ndarray:
    """A column as astropy takes it (masked where NULL; timestamps as text; arrays 2-D)."""
    arr = col.combine_chunks()
    t = arr.type
    if pa.types.is_fixed_size_list(t):
        return arr.flatten().to_numpy().reshape(len(arr), t.list_size)
    if pa.types.is_timestamp(t):
        arr = arr.cast(pa.string())
    values = arr.to_numpy(zero_copy_only=False)
    if arr.null_count and values.dtype != object:
        return np.ma.masked_array(values, arr.is_null().to_numpy(zero_copy_only=False))
    if values.dtype == object:
        values = np.ma.masked_array(np.array([v if v is not None else "" for v in values], dtype=str),
                                    arr.is_null().to_numpy(zero_copy_only=False))
    return values


def run_child(spec: dict, timeout: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{spec}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="galaxies (rows of galaxy_features)")
    p.add_argument("--emb-n", type=int, default=None, help="embedding rows (default: --n)")
    p.add_argument("--dim", type=int, default=384, help="embedding width")
    p.add_argument("--formats", default=",".join(FORMATS))
    p.add_argument("--emb-formats", default=None, help="formats for the embeddings table (default: --formats)")
    p.add_argument("--baseline", type=int, default=0, metavar="ROWS",
                   help="also the first ROWS of galaxy_features through astropy's whole-table writers (VOTable "
                        "BINARY2, FITS) and through the stream, for the ratios")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    emb_n = args.n if args.emb_n is None else args.emb_n
    formats = args.formats.split(",")
    emb_formats = formats if args.emb_formats is None else args.emb_formats.split(",")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        root = Path(tmp) / "wh"
        log(f"building {args.n:,} galaxies and {emb_n:,} x {args.dim} embeddings")
        build(root, args.n, emb_n, args.dim, args.seed)
        jobs = [("galaxy_features", None, args.n, f, "stream") for f in formats]
        if args.baseline:
            query = f"SELECT * FROM galaxy_features LIMIT {args.baseline}"
            jobs += [("galaxy_features", query, args.baseline, f, how) for f in ("votable", "fits")
                     for how in ("stream", "astropy")]
        jobs += [("embeddings_bench", None, emb_n, f, "stream") for f in emb_formats]
        for table, query, n, fmt, how in jobs:
            if n == 0:
                continue
            out = Path(tmp) / f"{table}.{how}.{FORMATS[fmt]}"
            res = run_child({"root": str(root), "table": table, "sql": query, "format": fmt, "out": str(out),
                             "how": how}, args.timeout)
            out.unlink()
            results.append({"table": table if query is None else f"{table} LIMIT {n:,}", "format": fmt,
                            "how": how, **res})
            log(f"  {table} {fmt} {how}: {res['rows']:,} rows {res['seconds']:.1f} s, "
                f"peak RSS {res['peak_rss_mib']:.0f} MiB (before {res['rss_before_mib']:.0f}), "
                f"{res['bytes'] / 1e6:.0f} MB, load {os.getloadavg()[0]:.1f}")
            if args.json:  # after each export: a run cut short keeps what it measured
                Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"\n{args.n:,} galaxies (galaxy_features: 52 columns), {emb_n:,} embeddings x {args.dim} x 2, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, {datetime.now(UTC):%Y-%m-%d}\n")
    print("| relation | rows | format | writer | wall s | rows/s | peak RSS MiB | RSS before MiB | file MB |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['table']} | {r['rows']:,} | {r['format']} | {r['how']} | {r['seconds']:.1f} | "
              f"{r['rows'] / r['seconds']:,.0f} | {r['peak_rss_mib']:.0f} | {r['rss_before_mib']:.0f} | "
              f"{r['bytes'] / 1e6:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
