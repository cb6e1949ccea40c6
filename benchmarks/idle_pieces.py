"""Two of the demo's single-core pieces (issue 25, session 9), each against its baseline in the same run.

1. **The end of a command**: a process that has imported torch, torchvision, timm, lancedb, Dagster,
   scikit-learn, umap and statmorph exits through the interpreter's teardown (``sys.exit``) or through
   :func:`service.cli.quick_exit` (threads joined, atexit handlers, flush, ``os._exit``). Measured from
   the child's last line to the parent seeing it exit.
2. **The analysis' Spearman estimates** below the pool threshold: 60 seeded
   :func:`models.representation.spearman_ci` jobs of 600 galaxies (1,000 resamples, 1,000 permutations),
   serial against :func:`features.parallel.thread_map` on 2 threads; the results must be equal.

Usage (serialised with the other heavy runs; ratios, not seconds)::

    flock /tmp/astrovision-heavy.lock .venv/bin/python benchmarks/idle_pieces.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = """
import sys, time
import torch, torchvision, timm, lancedb, dagster, sklearn.linear_model, umap, statmorph
print(time.time(), flush=True)
if sys.argv[1] == "quick":
    from service.cli import quick_exit
    quick_exit(0)
sys.exit(0)
"""


def exit_seconds(mode: str) -> float:
    """Seconds from the child's last line to its exit, ``mode`` ``"teardown"`` or ``"quick"``."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, mode], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    proc.wait()
    end = time.time()
    if proc.returncode != 0:
        raise SystemExit(f"child ({mode}) exited {proc.returncode}")
    return end - float(line)


def spearman_seconds(threads: int) -> tuple[float, list]:
    """Seconds for the 60 Spearman jobs on ``threads`` threads (1: serial), and their results."""
    import numpy as np

    from features.parallel import thread_map
    from stages.analysis import _spearman_job

    rng = np.random.default_rng(0)
    jobs = [(rng.normal(size=600), rng.normal(size=600), 1000, 1000, k) for k in range(60)]
    t = time.perf_counter()
    out = thread_map(_spearman_job, jobs, workers=threads)
    return time.perf_counter() - t, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    rows = {"exit: interpreter teardown": [], "exit: quick_exit": [], "spearman: serial": [],
            "spearman: 2 threads": []}
    for _ in range(args.repeats):  # interleaved, so a drifting host moves both sides alike
        rows["exit: interpreter teardown"].append(exit_seconds("teardown"))
        rows["exit: quick_exit"].append(exit_seconds("quick"))
        serial, a = spearman_seconds(1)
        threaded, b = spearman_seconds(2)
        if a != b:
            raise SystemExit("thread_map changed the Spearman estimates")
        rows["spearman: serial"].append(serial)
        rows["spearman: 2 threads"].append(threaded)
    print("| piece | seconds (each repeat) | median |\n|---|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {', '.join(f'{v:.2f}' for v in values)} | {statistics.median(values):.2f} |")
    exit_ratio = [q / t for q, t in zip(rows["exit: quick_exit"], rows["exit: interpreter teardown"])]
    rho_ratio = [t / s for t, s in zip(rows["spearman: 2 threads"], rows["spearman: serial"])]
    print(f"\nquick_exit / teardown: {', '.join(f'{r:.2f}' for r in exit_ratio)}; "
          f"threads / serial: {', '.join(f'{r:.2f}' for r in rho_ratio)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
