"""End to end: the Dagster ``morphometrics`` asset on a Galaxy10-format file, projected to all of Galaxy10.

The real ``Galaxy10_DECals.h5`` (2.5 GB, Zenodo) is out of reach of the development machines, so this
writes a file in its exact format from the 370 real GZ DECaLS stamps in ``../shared`` (the same survey,
256 x 256 RGB composites at 0.262"/px; rotated by 90 degrees per repeat so no two images are equal),
ingests it with the ``galaxies`` asset, then materializes ``morphometrics`` shard by shard as real
Dagster runs (``dagster.materialize`` against the warehouse's instance), with ``--workers`` processes
and the asset's defaults (r band, Sersic fit, 30 s time limit). It reports:

* galaxies per second of the asset, wall clock, everything included (image reads, worker pool per
  shard, statmorph, the Lance upsert, checks), and the time the 17,736 galaxies of Galaxy10 would take;
* in the same run, on a random subsample measured in this process on one core: plain
  ``statmorph.SourceMorphology`` (the baseline) and the fast path, so the asset's rate is also given as
  a ratio to plain statmorph and to the ideal ``workers`` x one-core rate (the pool's efficiency).

Usage::

    .venv/bin/python benchmarks/bench_morphometrics_galaxy10.py --n 740 --shard-size 370 --workers 2
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_ingest import SHARED, make_file  # noqa: E402

GALAXY10_N = 17_736


def one_core(h5: Path, n: int, seed: int) -> dict[str, float]:
    """Seconds per galaxy on one core for plain statmorph and the fast path (same galaxies, interleaved)."""
    import h5py

    from features.morphometrics import MorphOptions, measure_image

    with h5py.File(h5, "r") as f:
        pick = np.sort(np.random.default_rng(seed).choice(f["images"].shape[0], n, replace=False))
        images = [f["images"][int(i)] for i in pick]
    configs = {"plain": MorphOptions(fast=False, time_limit_s=0), "fast": MorphOptions(fast=True, time_limit_s=0)}
    spent = dict.fromkeys(configs, 0.0)
    for image in images:
        for name, opt in configs.items():
            t0 = time.perf_counter()
            measure_image(image, image_kind="rgb_composite", bands="z,r,g", band="r", pxscale=0.262, options=opt)
            spent[name] += time.perf_counter() - t0
    return {k: v / n for k, v in spent.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=740, help="galaxies in the file")
    ap.add_argument("--shard-size", type=int, default=370)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--baseline-n", type=int, default=20, help="galaxies timed on one core (plain and fast)")
    ap.add_argument("--out", type=Path, help="work directory (default: a new temporary one)")
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        raise SystemExit(f"needs the real stamps in {SHARED}")
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.getLogger("dagster").setLevel(logging.CRITICAL)

    import dagster as dg

    from dagster_project.defs.morphometrics.assets import morphometrics
    from dagster_project.resources import WarehouseResource
    from dagster_project.runner import instance_for, run_pipeline
    from features.sources.galaxy10 import Galaxy10Source
    from stages.sources import register_source
    from warehouse import Warehouse

    work = Path(args.out or tempfile.mkdtemp(prefix="astrovision-morph-g10-"))
    work.mkdir(parents=True, exist_ok=True)
    h5 = work / "Galaxy10_DECals.h5"
    kind = make_file(h5, args.n)
    wh = Warehouse.open(work / "home")
    shards = register_source(wh, Galaxy10Source(h5), path=str(h5), shard_size=args.shard_size)
    report = run_pipeline(wh, shards, groups=["ingest"], progress=False, log=lambda _: None)
    if not report.ok:
        raise SystemExit(f"ingest failed: {report.failed}")

    load0 = os.getloadavg()[0]
    instance = instance_for(wh)
    resources = {"warehouse": WarehouseResource(root=str(wh.root))}
    config = {"ops": {"morphometrics": {"config": {"workers": args.workers}}},
              "loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    per_shard = []
    t_all = time.perf_counter()
    for shard in shards:
        t0 = time.perf_counter()
        result = dg.materialize([morphometrics], partition_key=shard, instance=instance, resources=resources,
                                run_config=config, raise_on_error=True)
        assert result.success
        per_shard.append(time.perf_counter() - t0)
    wall = time.perf_counter() - t_all
    rows = wh.read("morphometrics", columns=["flags", "statmorph_flag", "flag_sersic", "runtime_s"])
    n = rows.num_rows
    base = one_core(h5, min(args.baseline_n, n), seed=0)
    load1 = os.getloadavg()[0]

    rate = n / wall
    flags = np.asarray(rows.column("flags").to_numpy(zero_copy_only=False))
    from features.flags import Flag

    failed = int(np.count_nonzero(flags & int(Flag.MORPH_FAILED | Flag.MORPH_TIMED_OUT | Flag.MORPH_NO_CENTRAL_SOURCE)))
    print(f"# {n} galaxies ({kind}), {len(shards)} shards of <= {args.shard_size}, {args.workers} workers, "
          f"{os.cpu_count()} cores; load average {load0:.1f} before, {load1:.1f} after\n")
    print("| what | seconds per galaxy | galaxies/s | Galaxy10 (17,736) | ratio |")
    print("|---|---|---|---|---|")
    print(f"| plain statmorph, one core (baseline, {args.baseline_n} galaxies) | {base['plain']:.3f} | "
          f"{1 / base['plain']:.2f} | {GALAXY10_N * base['plain'] / 60:.0f} min on 1 core | 1.00x |")
    print(f"| fast path, one core (same galaxies) | {base['fast']:.3f} | {1 / base['fast']:.2f} | "
          f"{GALAXY10_N * base['fast'] / 60:.0f} min on 1 core | {base['plain'] / base['fast']:.2f}x |")
    print(f"| **`morphometrics` asset, {args.workers} workers, wall clock, all {n}** | {wall / n:.3f} | {rate:.2f} | "
          f"**{GALAXY10_N / rate / 60:.0f} min** | {base['plain'] * rate:.2f}x |")
    print(f"\npool efficiency: {rate * base['fast'] / args.workers:.0%} of {args.workers} x the one-core fast rate; "
          f"shards took {', '.join(f'{s:.0f}' for s in per_shard)} s")
    print(f"rows without a measurement (failed, timed out, no central source): {failed} of {n}; "
          f"statmorph flag >= 2: {int(np.nansum(np.asarray(rows.column('statmorph_flag').to_numpy(zero_copy_only=False), float) >= 2))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
