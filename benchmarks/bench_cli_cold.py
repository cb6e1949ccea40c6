"""Cold-process wall time of ``astrovision --help``, ``show ID`` and ``similar ID`` (median of N runs).

Builds a 60-galaxy warehouse (galaxies, photometry, one embeddings table: the ``tests/test_search.py``
helper) in a temporary folder, then times fresh ``python -m service.cli`` processes, alternating the
code trees given with ``--tree`` (each put first on ``PYTHONPATH``) so both see the same load. A tree
``git:REF`` is ``git archive REF`` of this repository, exported to a temporary folder (e.g. ``git:main``
for the baseline). Each tree is byte-compiled first: an installed package has its ``.pyc`` files, and a
process run with ``PYTHONDONTWRITEBYTECODE`` (this machine's default) would otherwise compile every
module of ours on every start (~0.15 s)::

    python benchmarks/bench_cli_cold.py --tree git:main --tree . --runs 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _build(home: Path) -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    from test_search import make_warehouse

    from warehouse import Warehouse

    make_warehouse(Warehouse.open(home))


def _tree(spec: str, tmp: Path) -> Path:
    """The folder of a ``--tree``: itself, or ``git:REF`` exported under ``tmp``; byte-compiled."""
    if spec.startswith("git:"):
        out = tmp / ("tree-" + spec[4:].replace("/", "_"))
        out.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", spec[4:]], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    else:
        out = Path(spec).resolve()
    for package in ("service", "warehouse", "stages", "features", "models"):
        if (out / package).is_dir():
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(out / package)], check=True)
    return out


def main() -> int:
    """Print a markdown table: command, then the median (s) per tree."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", required=True, help="a code tree to time, or git:REF (repeat)")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    print(f"load average at the start: {os.getloadavg()}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        trees = {spec: _tree(spec, Path(tmp)) for spec in args.tree}
        home = Path(tmp) / "wh"
        _build(home)
        commands = {"--help": ["--help"], "show ID": ["--home", str(home), "show", "demo:000003"],
                    "similar ID": ["--home", str(home), "similar", "demo:000003"]}
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.runs):
            for label, argv in commands.items():
                for tree in args.tree:
                    env = {**os.environ, "PYTHONPATH": str(trees[tree]), "HF_HUB_OFFLINE": "1"}
                    t0 = time.perf_counter()
                    subprocess.run([sys.executable, "-m", "service.cli", *argv], env=env, check=True,
                                   capture_output=True, cwd=tmp)
                    times.setdefault((label, tree), []).append(time.perf_counter() - t0)
        print("| command | " + " | ".join(args.tree) + " |")
        print("|---|" + "---|" * len(args.tree))
        for label in commands:
            cells = [f"{statistics.median(times[(label, t)]):.2f}" for t in args.tree]
            print(f"| `{label}` | " + " | ".join(cells) + " |")
    print(f"load average at the end: {os.getloadavg()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
