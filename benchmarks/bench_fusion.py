"""Fusion, ablations, calibration and conformal coverage on an existing warehouse (issue 12's benchmark).

Trains ``fusion`` (with its ablation) on the warehouse's split set, predicts with it, and prints one
markdown report: the ablation table, what each modality held, then for the newest version of every
classifier in the registry the test ECE before/after temperature scaling and the LAC conformal coverage
per class (marginal and class-conditional, 95% Clopper-Pearson intervals, mean set size), and the time
the fusion stages took.

Usage (the warehouse already holds a demo or an ingest run; see docs/benchmarks_calibration.md)::

    ASTROVISION_HOME=/tmp/fusion_bench/wh3000 PYTHONPATH=. python benchmarks/bench_fusion.py --out results.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from models.config import make_config
from models.conformal import coverage_table_md
from models.fusion import ablation_table_md
from stages.predict import predict_all
from stages.training import train_model
from stages.versions import list_models
from warehouse import Warehouse


def _latest(wh: Warehouse) -> list[dict]:
    rows: dict[str, dict] = {}
    for r in list_models(wh):
        if r["kind"] != "segmentation":
            rows[r["name"]] = r
    return list(rows.values())


def report(wh: Warehouse, *, label: str, skip_train: bool, predict: bool) -> list[str]:
    lines: list[str] = []
    if not skip_train:
        t0 = time.perf_counter()
        out = train_model(wh, "fusion", make_config("fusion", label_column=label), log=print)
        seconds = time.perf_counter() - t0
        lines += [f"fusion v{out.version}: trained, gated, calibrated, conformalized and registered in {seconds:.1f} s "
                  f"(fit {out.fit['seconds']:.1f} s, ablation of {len(out.fit['ablation']['rows'])} subsets "
                  f"{out.fit['ablation']['seconds']:.1f} s); gate {'passed' if out.passed_gate else 'FAILED'}: "
                  f"{out.gate.reason}", ""]
        if predict:
            t1 = time.perf_counter()
            summary = predict_all(wh, models=["fusion"], gated=False, log=print)
            lines += [f"fusion predictions of every galaxy (MC dropout 8 passes): {time.perf_counter() - t1:.1f} s; "
                      + json.dumps({k: v['written'] for k, v in summary.items()}), ""]
    rows = _latest(wh)
    fusion = next((r for r in rows if r["name"] == "fusion"), None)
    if fusion is not None:
        fit = json.loads(fusion["metrics_json"])["fit"]
        lines += [f"## Ablation (fusion v{fusion['version']}, encoder {fit['encoder']}, weights {fusion['weights_origin']})",
                  "", ablation_table_md(fit["ablation"]), "",
                  "Modality coverage (galaxies that have it, per split): " + json.dumps(fit["coverage"]),
                  f"Modalities missing for every galaxy: {fit['modalities_missing_for_all'] or 'none'}", ""]
    lines += ["## Calibration (test split; T fitted on the temperature half of val by NLL)", "",
              "| model | test balanced accuracy [95% CI] | gate | T | ECE before -> after | NLL before -> after | "
              "val ECE raised? |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        cal = json.loads(r["metrics_json"]).get("calibration")
        if not cal:
            continue
        t = cal["test"]
        lines.append(f"| {r['name']} v{r['version']} ({r['weights_origin'].split(' sha256')[0]}) | "
                     f"{r['test_balanced_accuracy']:.3f} [{r['test_balanced_accuracy_low']:.3f}, "
                     f"{r['test_balanced_accuracy_high']:.3f}] | {'passed' if r['gate_passed'] else 'failed'} | "
                     f"{cal['temperature']:.2f} | {t['before']['ece']:.3f} -> {t['after']['ece']:.3f} | "
                     f"{t['before']['nll']:.3f} -> {t['after']['nll']:.3f} | {'yes' if cal['val_ece_raised'] else 'no'} |")
    for r in rows:
        conf = json.loads(r["metrics_json"]).get("conformal")
        if not conf:
            continue
        lines += ["", f"## Conformal sets, {r['name']} v{r['version']} (LAC, alpha {conf['alpha']:g}, "
                      f"{conf['n_conformalize']} conformalization galaxies; test split)", "",
                  coverage_table_md(conf["scores"]["lac"])]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--home", help="warehouse root (default $ASTROVISION_HOME)")
    p.add_argument("--label", default="label", help="label column")
    p.add_argument("--skip-train", action="store_true", help="report the registry only")
    p.add_argument("--no-predict", action="store_true", help="do not time the fusion predictions")
    p.add_argument("--out", type=Path, help="also write the report here")
    args = p.parse_args()
    wh = Warehouse.open(args.home)
    text = "\n".join(report(wh, label=args.label, skip_train=args.skip_train, predict=not args.no_predict))
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
