"""Compare what users see of two warehouses' models: registry metrics, predictions, temperatures, conformal sets.

For every model version in both registries (``models`` table) it reports whether the registry row's metrics
(``metrics_json`` flattened, the scalar columns, the gate) are identical, and for the predictions of that
version (``predictions`` table) the largest probability difference, the share of galaxies whose predicted
label, temperature, conformal set or marginal set differ. Wall times, throughput and paths are left out
(they differ between any two runs). Read-only on both sides.

    PYTHONPATH=$PWD python benchmarks/compare_warehouses.py /work/baseline/demo /tmp/loop-demo [--json out.json]

Exit status 0 when everything compared is identical, 1 when something differs (the report says what).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import numpy as np

from warehouse import Warehouse
from warehouse.sqltext import quote

VOLATILE = ("seconds", "images_per_s", "data_wait_fraction", "artefact_path", "checkpoint", "num_workers",
            "train_seconds", "created_at", "written_at", "code_version", "run_id", "device", "table_versions_json",
            "split_version")
"""Keys whose values differ between any two runs (timings, paths, write times, code version); never compared."""


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            _flat(f"{prefix}[{i}]", v, out)
    else:
        out[prefix] = value


def _volatile(key: str) -> bool:
    return any(part.split("[")[0] in VOLATILE or part.endswith("_seconds") for part in key.split("."))


def _same(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return abs(a - b) <= tol * max(1.0, abs(a), abs(b))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return all(_same(x, y, tol) for x, y in zip(a, b))
    return a == b


def _registry(wh: Warehouse) -> dict[tuple[str, int], dict[str, Any]]:
    if not wh.exists("models"):
        return {}
    rows = wh.read("models").to_pylist()
    out = {}
    for r in rows:
        flat: dict[str, Any] = {}
        for k, v in r.items():
            if k.endswith("_json") and isinstance(v, str):
                _flat(k[:-5], json.loads(v), flat)
            else:
                flat[k] = v
        out[(r["name"], int(r["version"]))] = {k: v for k, v in flat.items() if not _volatile(k)}
    return out


def _predictions(wh: Warehouse, name: str, version: int) -> dict[str, dict[str, Any]]:
    if not wh.exists("predictions"):
        return {}
    t = wh.read("predictions", where=f"model_name = {quote(name)} AND model_version = {int(version)}",
                columns=["galaxy_id", "probabilities", "predicted_label", "temperature", "conformal_set",
                         "marginal_set", "calibrated_probabilities"]).to_pylist()
    return {r["galaxy_id"]: r for r in t}


def compare_model(a: dict[str, Any], b: dict[str, Any], pa_: dict[str, dict], pb: dict[str, dict],
                  tol: float) -> dict[str, Any]:
    """One model version: differing registry keys and prediction statistics."""
    keys = sorted(set(a) | set(b))
    differ = {k: [a.get(k), b.get(k)] for k in keys if not _same(a.get(k), b.get(k), tol)}
    common = sorted(set(pa_) & set(pb))
    pred: dict[str, Any] = {"n_a": len(pa_), "n_b": len(pb), "n_common": len(common)}
    if common:
        pa_arr = np.asarray([pa_[g]["probabilities"] for g in common], dtype=np.float64)
        pb_arr = np.asarray([pb[g]["probabilities"] for g in common], dtype=np.float64)
        pred["max_abs_probability_difference"] = float(np.abs(pa_arr - pb_arr).max()) if pa_arr.size else 0.0
        for field in ("predicted_label", "temperature", "conformal_set", "marginal_set"):
            pred[f"share_{field}_differs"] = float(np.mean([not _same(pa_[g][field], pb[g][field], tol)
                                                            for g in common]))
    same_preds = (pred["n_a"] == pred["n_b"] == pred["n_common"]
                  and pred.get("max_abs_probability_difference", 0.0) <= tol
                  and all(v == 0.0 for k, v in pred.items() if k.startswith("share_")))
    return {"identical": not differ and same_preds, "registry_differences": differ, "predictions": pred}


def compare(root_a: str, root_b: str, tol: float = 1e-9) -> dict[str, Any]:
    """Every model version of either warehouse: identical or how it differs."""
    wa, wb = Warehouse.open(root_a), Warehouse.open(root_b)
    ra, rb = _registry(wa), _registry(wb)
    report: dict[str, Any] = {"a": root_a, "b": root_b, "tolerance": tol,
                              "only_in_a": [f"{n} v{v}" for n, v in sorted(set(ra) - set(rb))],
                              "only_in_b": [f"{n} v{v}" for n, v in sorted(set(rb) - set(ra))], "models": {}}
    for key in sorted(set(ra) & set(rb)):
        name, version = key
        report["models"][f"{name} v{version}"] = compare_model(
            ra[key], rb[key], _predictions(wa, name, version), _predictions(wb, name, version), tol)
    report["identical"] = (not report["only_in_a"] and not report["only_in_b"]
                           and all(m["identical"] for m in report["models"].values()))
    return report


def _short(v: Any) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="warehouse root (the baseline)")
    parser.add_argument("b", help="warehouse root (the one to check)")
    parser.add_argument("--tolerance", type=float, default=1e-9, help="relative tolerance of numbers")
    parser.add_argument("--json", help="also write the full report here")
    args = parser.parse_args(argv)
    report = compare(args.a, args.b, args.tolerance)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2, default=str)
    for name, m in report["models"].items():
        p = m["predictions"]
        print(f"{name}: {'IDENTICAL' if m['identical'] else 'DIFFERS'}; {len(m['registry_differences'])} registry "
              f"key(s) differ; predictions {p['n_common']} common, max |dp| "
              f"{p.get('max_abs_probability_difference', 0.0):.3g}, "
              + ", ".join(f"{k[6:-8]} {100 * v:.1f}%" for k, v in p.items() if k.startswith("share_")))
        for k, (va, vb) in list(m["registry_differences"].items())[:12]:
            print(f"    {k}: {_short(va)} -> {_short(vb)}")
        if len(m["registry_differences"]) > 12:
            print(f"    ... and {len(m['registry_differences']) - 12} more")
    for side in ("only_in_a", "only_in_b"):
        if report[side]:
            print(f"{side}: {', '.join(report[side])}")
    print("ALL IDENTICAL" if report["identical"] else "DIFFERENCES FOUND")
    return 0 if report["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
