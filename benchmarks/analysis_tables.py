"""Markdown tables of a warehouse's ``representation_analysis`` (for docs/benchmarks_analysis.md).

Reads the stored table only (run the ``analysis`` group first), and prints:

1. cross-validated R^2 per quantity: each encoder and the pixel baseline, with 95 % CIs, and the paired
   difference encoder - pixels;
2. per quantity and encoder, the principal component with the largest |rho|, with its CI, p and BH q;
3. the encoders' weights and the UMAP neighbourhood figures from ``embedding_maps``.

Usage::

    .venv/bin/python benchmarks/analysis_tables.py --home /path/to/warehouse
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from warehouse import Warehouse


def _ci(r: dict) -> str:
    return f"{r['value']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True)
    args = ap.parse_args()
    wh = Warehouse.open(args.home)
    rows = wh.sql("SELECT * FROM representation_analysis", limit=None).to_dicts()
    encoders = sorted({r["encoder"] for r in rows if r["encoder"] != "pixels"})
    quantities = list(dict.fromkeys(r["quantity"] for r in rows))
    by = {(r["quantity"], r["encoder"], r["statistic"]): r for r in rows}
    print("| quantity | subset | n | " + " | ".join(f"R^2 {e}" for e in encoders) + " | R^2 pixels | "
          + " | ".join(f"{e} - pixels (p)" for e in encoders) + " |")
    print("|---" * (4 + 2 * len(encoders)) + "|")
    for q in quantities:
        px = by.get((q, "pixels", "r2_cv"))
        if px is None:
            continue
        cells = [_ci(by[(q, e, "r2_cv")]) for e in encoders]
        diffs = [f"{_ci(d)} ({d['p']:.3f})" if (d := by.get((q, e, "r2_cv_minus_pixels"))) else "" for e in encoders]
        print(f"| {q} | {px['subset']} | {px['n']} | " + " | ".join(cells) + f" | {_ci(px)} | " + " | ".join(diffs) + " |")
    print("\n| quantity | encoder | strongest PC | rho [95% CI] | p | BH q |\n|---|---|---|---|---|---|")
    for q in quantities:
        for e in encoders:
            cand = [r for r in rows if r["quantity"] == q and r["encoder"] == e and r["statistic"].startswith("spearman")
                    and r["value"] == r["value"]]
            if cand:
                best = max(cand, key=lambda r: abs(r["value"]))
                print(f"| {q} | {e} | {best['statistic'].removeprefix('spearman_').upper()} | {_ci(best)} "
                      f"| {best['p']:.4f} | {best['q']:.4f} |")
    sig = sum(1 for r in rows if r["statistic"].startswith("spearman") and r["q"] < 0.05)
    tot = sum(1 for r in rows if r["statistic"].startswith("spearman"))
    print(f"\n{sig} of {tot} rho tests have BH q < 0.05.")
    maps = wh.sql("SELECT encoder, method, any_value(weights_origin) AS weights, any_value(weights_sha256) AS sha, "
                  "any_value(params_json) AS params, count(*) AS n, sum(fitted::INT) AS fitted FROM embedding_maps "
                  "GROUP BY ALL ORDER BY ALL", limit=None).to_dicts()
    print("\n| encoder | method | galaxies | fitted | weights | params |\n|---|---|---|---|---|---|")
    for m in maps:
        print(f"| {m['encoder']} | {m['method']} | {m['n']} | {m['fitted']} | {m['weights']} sha256:{m['sha'][:12]} "
              f"| {json.loads(m['params'])} |")


if __name__ == "__main__":
    main()
