"""Cost of the uncertainty stages on a trained warehouse: one deterministic pass vs MC-dropout passes.

Usage (after ``astrovision demo``, on its warehouse)::

    ASTROVISION_HOME=/path/to/wh PYTHONPATH=. python benchmarks/bench_uncertainty.py --passes 8

Prints, per registered image model version 1 with dropout, the seconds of one deterministic pass and of
``--passes`` MC-dropout passes over every galaxy, and the mean predictive entropy and mutual information.
"""

from __future__ import annotations

import argparse
import time

from stages.predict import load_predictor
from stages.versions import list_models
from warehouse import Warehouse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", type=int, default=8)
    args = ap.parse_args()
    wh = Warehouse.open()
    ids = wh.read("galaxies", columns=["galaxy_id"]).column("galaxy_id").to_pylist()
    for row in list_models(wh):
        pred = load_predictor(wh, row["name"], int(row["version"]))
        status = pred.mc_dropout_status()
        if status:
            print(f"{row['name']} v{row['version']}: {status}")
            continue
        t0 = time.perf_counter()
        pred.predict(wh, ids)
        t1 = time.perf_counter()
        h, mi = pred.mc_dropout(wh, ids, passes=args.passes)
        t2 = time.perf_counter()
        print(f"{row['name']} v{row['version']}: one pass {t1 - t0:.1f} s, {args.passes} MC-dropout passes "
              f"{t2 - t1:.1f} s over {len(ids)} galaxies; mean entropy {h.mean():.3f}, mean MI {mi.mean():.4f}, "
              f"max MI {mi.max():.3f}")


if __name__ == "__main__":
    main()
