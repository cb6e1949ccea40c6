"""Two ``astrovision ingest --source folder`` processes at once into one warehouse, on disjoint halves.

Splits the 370 Galaxy Zoo DECaLS ring galaxies (``../shared/data/gz_decals_rings``) into two folders
(``rings_a``, ``rings_b``: copies of the images and catalogue rows), starts both ingests together and
reports each exit status, the rows stored per source and shard, and any failed check. Every galaxy
must be stored exactly once under its own source's name.

    PYTHONPATH=. python benchmarks/concurrent_ingest.py [--per-half 185] [--keep DIR]

``--precreate`` creates the Dagster instance before the two processes start (a workaround for the
instance-creation race of a fresh warehouse, when that is not fixed in the runner).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RINGS = ROOT.parent / "shared" / "data" / "gz_decals_rings"


def split_rings(dest: Path, per_half: int) -> list[Path]:
    """Write ``dest/rings_a`` and ``dest/rings_b``: disjoint halves of the ring sample, ``per_half`` each."""
    with open(RINGS / "catalog.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    if 2 * per_half > len(body):
        raise SystemExit(f"--per-half {per_half}: the sample has {len(body)} galaxies")
    halves = []
    for k, part in enumerate((body[:per_half], body[per_half:2 * per_half])):
        folder = dest / f"rings_{'ab'[k]}"
        (folder / "images").mkdir(parents=True)
        for row in part:
            shutil.copy(RINGS / "images" / f"{row[0]}.png", folder / "images" / f"{row[0]}.png")
        with open(folder / "catalog.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([header, *part])
        halves.append(folder)
    return halves


def ingest_command(home: Path, folder: Path, *extra: str) -> list[str]:
    """The CLI command line that ingests ``folder`` into ``home``."""
    return [sys.executable, "-m", "service.cli", "--home", str(home), "ingest", "--source", "folder",
            "--path", str(folder), "--label-column", "ring", "--pxscale", "unknown", *extra]


def run_together(commands: list[list[str]], env: dict[str, str] | None = None) -> list[subprocess.CompletedProcess]:
    """Start every command at once; wait for all; return their results (stdout and stderr captured)."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for c in commands]
    out = []
    for cmd, p in zip(commands, procs):
        stdout, stderr = p.communicate()
        out.append(subprocess.CompletedProcess(cmd, p.returncode, stdout, stderr))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-half", type=int, default=185)
    ap.add_argument("--precreate", action="store_true", help="create the Dagster instance first")
    ap.add_argument("--keep", help="work in this directory and keep it")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="concurrent_ingest_"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    try:
        halves = split_rings(work, args.per_half)
        home = work / "wh"
        sys.path.insert(0, str(ROOT))
        from warehouse import Warehouse

        wh = Warehouse.open(home)
        if args.precreate:
            from dagster_project.runner import instance_for

            instance_for(wh).get_runs()
        t0 = time.perf_counter()
        results = run_together([ingest_command(home, h) for h in halves], env=env)
        elapsed = time.perf_counter() - t0
        for h, r in zip(halves, results):
            checks = [line.strip() for line in r.stdout.splitlines() if "check failed" in line]
            print(f"{h.name}: exit {r.returncode}; failed checks: {checks or 'none'}")
            if r.returncode:
                print("  stderr: " + (r.stderr.strip().splitlines() or [""])[-1])
        counts = wh.sql("SELECT source, shard, count(*) AS n, count(DISTINCT galaxy_id) AS ids "
                        "FROM galaxies GROUP BY 1, 2 ORDER BY 1, 2")
        print(counts)
        print("sources:", wh.sql("SELECT source, kind, n_galaxies FROM sources ORDER BY 1").rows())
        total = int(counts["n"].sum()) if counts.height else 0
        no_image = wh.sql("SELECT count(*) AS n FROM galaxies WHERE galaxy_id NOT IN "
                          "(SELECT galaxy_id FROM images)")["n"][0] if wh.exists("images") else total
        print(f"galaxies stored: {total} of {2 * args.per_half}; images: {wh.count('images')}; "
              f"galaxies without an image: {no_image}; wall {elapsed:.1f} s")
        ok = all(r.returncode == 0 for r in results) and total == 2 * args.per_half and no_image == 0
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
