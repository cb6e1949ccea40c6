"""Galaxy10 end to end, rehearsed: the README's ``ingest --source galaxy10 --all`` measured per stage.

Usage (serialised with the other engineers' heavy runs)::

    flock /tmp/astrovision-heavy.lock .venv/bin/python benchmarks/rehearse_galaxy10.py --n 1500
    .venv/bin/python benchmarks/rehearse_galaxy10.py --n 17736            # the full-size rehearsal
    .venv/bin/python benchmarks/rehearse_galaxy10.py --path ~/data/Galaxy10_DECals.h5   # the real file
    .venv/bin/python benchmarks/rehearse_galaxy10.py --fit OUT1 OUT2      # planner costs from two rehearsals
    .venv/bin/python benchmarks/rehearse_galaxy10.py --check OUT3         # planner vs a third one, per stage
    .venv/bin/python benchmarks/rehearse_galaxy10.py --restep dinov2_probe --out OUT   # one stage again

Without ``--path`` it first writes a Galaxy10-format HDF5 (the datasets, dtypes and shapes
:class:`features.sources.galaxy10.Galaxy10Source` reads: ``images`` uint8 N x 256 x 256 x 3, ``ans``
uint8, ``ra``, ``dec``, ``redshift``, ``pxscale`` float64) whose images are made by the demo renderer
(:class:`features.sources.synthetic.SyntheticSurvey`: Galaxy10's class proportions), at the real
coordinates of ``../shared/data/galaxy10/Galaxy10_coord.csv``. Galaxy10's near-duplicates are the same
galaxy selected twice, so the second galaxy of every pair within 2 arcsec gets the first one's image and
label; below the full 17,736 the file keeps every such pair first and fills up with the other rows in
catalogue order, so the pairs appear at any size that holds them. Writing the file is not timed.

Then it runs ``astrovision --home HOME ingest --source galaxy10 --path FILE --all`` with the defaults a
user gets (shard size, ``--workers``, executor, encoders) into a fresh home, measured by
:mod:`benchmarks.proc_profile` (exact CPU from ``rusage`` of the whole tree, orphans included, psutil samples of the process tree, the
Dagster run's step windows), and prints per stage: runs, wall, CPU seconds, CPU utilisation
(CPU / wall / cores), peak RSS of the process tree while the stage ran, rows and bytes on disk of the
tables it writes, and beside them ``astrovision plan``'s projection (wall and CPU) for the same N.
Everything measured goes to ``<out>/rehearsal.json``, with each training stage's training seconds and the
galaxies it trained on (from the registry rows and the SSL encoder's record).

``--fit OUT ...`` (no run) fits the planner's per-stage costs (``stage_costs`` of
``stages/scale_costs.json``, :func:`stages.plan.project_stages`) on the rehearsals in those ``--out``
directories: per stage, non-negative least squares on relative residuals (:func:`_nnls`) of
``fixed + per_galaxy * N`` on what is not training and of ``fixed + per_trained * T (+ per_galaxy * N)``
on the training seconds (two sizes or more identify the first two terms; the third, each epoch's
validation on a val split that keeps growing once ``T`` stops at the cap, needs sizes on both sides of
the cap).

``--restep MODEL --out OUT`` measures one training stage of a finished rehearsal again on its own
warehouse, with the code of today (``astrovision train MODEL``, the same step under the same profiler,
the gate's cached pixel baseline removed first so the step fits it as in the full run), and puts it in
place of that stage's row of ``<out>/rehearsal.json``; the row it replaced and the commit that measured
the new one are kept under ``restepped``. It is how a change to one stage reaches ``--fit`` without
another hour-long rehearsal.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from proc_profile import per_step, run_measured, step_windows  # noqa: E402

COORDS = ROOT.parent / "shared" / "data" / "galaxy10" / "Galaxy10_coord.csv"
GALAXY10_N = 17_736

STAGE_TABLES = {"galaxies": ["galaxies", "images"], "embeddings": ["embeddings_*"],
                "pseudo_labels": ["pseudo_labels"], "cnn": ["models"], "efficientnet_b0": ["models"],
                "dinov2_probe": ["models"], "dinov2_finetune": ["models"], "fusion": ["models", "fusion_inputs"],
                "unet": ["models"], "ssl_encoder": []}
"""Tables each step writes, where the name is not the step's own (``models``: one registry row)."""

FIT_FLOOR_S = 30.0
"""Seconds below which a stage's fit weighs absolute, not relative, error (the planner check's threshold)."""

NOT_STEPS = ("(outside steps)", "(after exit)")
"""Rows of :func:`proc_profile.per_step` that are no stage."""

PER_SHARD = ("galaxies", "morphometrics", "embeddings", "photometry")
"""The default job's per-shard assets (``partitions_def=SHARDS``): one run per shard."""
TRAINED = {"ssl_encoder": "ssl_encoder", "cnn": "cnn", "efficientnet_b0": "efficientnet_b0",
           "dinov2_finetune": "dinov2_finetune", "unet": "unet", "embeddings": "random_vits14"}
"""Stage with a capped part -> its key of :func:`stages.plan.stage_budgets` (``embeddings``: the
``random_vits14`` baseline's sample)."""


def read_coords(path: Path = COORDS) -> tuple[np.ndarray, np.ndarray]:
    """``ra``, ``dec`` of every Galaxy10 row, in file order."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return (np.array([float(r["ra"]) for r in rows]), np.array([float(r["dec"]) for r in rows]))


def choose_rows(ra: np.ndarray, dec: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` catalogue rows (sorted) holding every near-duplicate pair that fits, and the pairs among them
    as ``(i, j)`` positions in the chosen rows."""
    from features.sources.duplicates import position_pairs

    pairs = position_pairs(ra, dec)
    in_pair = np.unique(pairs.ravel())
    if n >= len(ra):
        rows = np.arange(len(ra))
    else:  # whole pairs first (a pair cut in half is no pair), then the other rows in catalogue order
        keep = np.unique(pairs[: n // 2].ravel())[:n]
        rest = np.setdiff1d(np.arange(len(ra)), in_pair)
        rows = np.sort(np.concatenate([keep, rest[: n - len(keep)]]))
    pos = {int(r): k for k, r in enumerate(rows)}
    local = np.array([(pos[int(i)], pos[int(j)]) for i, j in pairs if int(i) in pos and int(j) in pos],
                     dtype=np.int64).reshape(-1, 2)
    return rows, local


def make_file(path: Path, n: int, seed: int = 0, batch: int = 64) -> dict:
    """Write the Galaxy10-format file of ``n`` rendered galaxies; what it holds."""
    import h5py

    from features.sources.synthetic import SyntheticSurvey

    ra_all, dec_all = read_coords()
    rows, pairs = choose_rows(ra_all, dec_all, n)
    n = len(rows)
    survey = SyntheticSurvey(n=n, seed=seed)
    labels = survey.labels.astype(np.uint8)
    copy_of = {int(j): int(i) for i, j in pairs}  # the second of a pair: the first one's image and label
    for j, i in copy_of.items():
        labels[j] = labels[i]
    firsts = set(copy_of.values())
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", (n, 256, 256, 3), np.uint8, chunks=(1, 256, 256, 3))
        kept: dict[int, np.ndarray] = {}
        for b in survey.iter_batches(0, n, batch_size=batch):
            block = np.stack(b.images).astype(np.uint8)
            for k, row in enumerate(b.row_index):
                if int(row) in copy_of:  # its partner has the smaller index, so it was written already
                    block[k] = kept[copy_of[int(row)]]
                if int(row) in firsts:
                    kept[int(row)] = block[k].copy()
            images[int(b.row_index[0]):int(b.row_index[-1]) + 1] = block
        f["ans"] = labels
        f["ra"] = ra_all[rows]
        f["dec"] = dec_all[rows]
        f["redshift"] = rng.uniform(0.01, 0.15, n)
        f["pxscale"] = np.full(n, 0.262)
    return {"n": n, "pairs": len(pairs), "render_s": time.perf_counter() - t0,
            "class_counts": np.bincount(labels, minlength=10).tolist()}


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def tables_of(step: str, existing: list[str]) -> list[str]:
    """The warehouse tables a step writes (see :data:`STAGE_TABLES`)."""
    names = STAGE_TABLES.get(step, [step])
    out = []
    for name in names:
        out += [t for t in existing if t.startswith(name[:-1])] if name.endswith("*") else \
            [name] if name in existing else []
    return out


def planner(n: int, shard_size: int, costs_path: Path | None = None) -> dict[str, tuple[float, float]]:
    """``astrovision plan``'s per-stage projection for ``n`` galaxies: stage -> (wall s, CPU s); empty when the
    costs file has no per-stage costs yet."""
    from stages.plan import load_costs, project_stages

    costs = load_costs(costs_path)
    if not costs.stage_costs:
        return {}
    return {r.stage: (r.wall_s, r.cpu_s) for r in project_stages(costs, n, shard_size)}


def baseline_part(home: Path, table: str = "embeddings_random_vits14") -> dict | None:
    """The ``random_vits14`` baseline's part of the ``embeddings`` stage of a finished rehearsal, from the
    latest materialization of each shard: ``train_s`` (its rows / its galaxies per second) and
    ``trained`` (the galaxies it embedded); ``None`` without a baseline beside another encoder."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    latest: dict[str, dict] = {}
    for rec in instance.fetch_materializations(dg.AssetKey("embeddings"), limit=10_000).records:  # Dagster caps a fetch at 10,000
        tables = rec.asset_materialization.metadata.get("tables")
        entry = tables.data.get(table) if tables is not None else None
        if entry is not None and len(tables.data) > 1 and rec.partition_key not in latest:  # newest first
            latest[rec.partition_key] = entry
    if not latest:
        return None
    return {"train_s": sum(e["rows"] / e["galaxies_per_second"] for e in latest.values() if e["rows"]),
            "trained": sum(int(e["rows"]) for e in latest.values())}


def training_parts(home: Path) -> dict[str, dict]:
    """Per training stage of a finished rehearsal: ``train_s`` (the training's own seconds: the registry
    row's ``train_seconds``, the SSL record's ``seconds``) and ``trained`` (galaxies trained on)."""
    from warehouse import Warehouse

    wh = Warehouse.open(home)
    out: dict[str, dict] = {}
    baseline = baseline_part(home)
    if baseline is not None:
        out["embeddings"] = baseline
    record = home / "encoders" / "ssl_resnet18" / "encoder.json"
    if record.is_file():
        r = json.loads(record.read_text())
        if not r.get("reused"):
            out["ssl_encoder"] = {"train_s": float(r["seconds"]), "trained": int(r.get("n_trained") or r["n_images"])}
    if not wh.exists("models"):
        return out
    for row in wh.read("models").to_pylist():
        if row["name"] not in TRAINED or row["name"] == "ssl_encoder":
            continue
        fit = json.loads(row["metrics_json"] or "{}").get("fit", {})
        trained = fit.get("n_train_used")
        if trained is None and row["name"] == "unet":  # rows before n_train_used: usable train pseudo-labels
            from features.segmentation.otsu import FAILED

            sp = wh.read("splits", columns=["galaxy_id", "split", "split_name"]).to_pylist()
            train = {r["galaxy_id"] for r in sp if r["split_name"] == row["split_name"] and r["split"] == "train"}
            pl = wh.read("pseudo_labels", columns=["galaxy_id", "flags"]).to_pylist()
            trained = sum(1 for r in pl if r["galaxy_id"] in train and not r["flags"] & FAILED)
        out[row["name"]] = {"train_s": float(row["train_seconds"] or 0.0), "trained": int(trained or 0)}
    return out


def _nnls(columns: list[list[float]], ys: list[float]) -> list[float]:
    """Coefficients ``c >= 0`` of ``y ~ sum(c_k * column_k)`` by least squares on the *relative* residuals
    ``(fit - y) / y`` (``scipy.optimize.nnls`` on the rows divided by ``y``): the planner is judged per stage
    by ``planned / measured``, so a 500-galaxy run counts as much as a 17,736 one (plain least squares fits
    the largest run and leaves the small ones tens of percent off), and no cost comes out negative. A value
    under :data:`FIT_FLOOR_S` is divided by the floor instead: a step of a few seconds is judged by its
    absolute error, or its noise at 500 galaxies would pull the line away from the runs that matter."""
    from scipy.optimize import nnls

    a, y = np.asarray(columns, float).T, np.asarray(ys, float)
    w = 1.0 / np.maximum(np.abs(y), FIT_FLOOR_S)
    coef, _ = nnls(a * w[:, None], y * w)
    return [float(c) for c in coef]


def _line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """``y = a + b * x`` by :func:`_nnls`; one distinct ``x``: all of it per ``x`` (``a`` = 0), as a fixed
    cost cannot be told apart."""
    if len(set(xs)) < 2:
        return 0.0, float(sum(ys) / sum(xs)) if sum(xs) else 0.0
    a, b = _nnls([[1.0] * len(xs), xs], ys)
    return a, b


def fit_stage_costs(outs: list[Path]) -> tuple[dict[str, dict], dict]:
    """``stage_costs`` (see :mod:`stages.plan`) fitted on the rehearsals in ``outs``, and what they were."""
    from stages.plan import stage_budgets

    budgets = stage_budgets()
    runs = [json.loads((d / "rehearsal.json").read_text()) for d in outs]
    for d, r in zip(outs, runs):
        r.setdefault("training", training_parts(d / "home"))
        if "embeddings" not in r["training"] and (d / "home" / "dagster").is_dir():  # runs before the baseline part
            part = baseline_part(d / "home")
            if part is not None:
                r["training"]["embeddings"] = part
    stages = sorted({s for r in runs for s in r["steps"]} - set(NOT_STEPS))
    costs: dict[str, dict] = {}
    for stage in stages:
        have = [r for r in runs if stage in r["steps"]]
        ns = [float(r["n"]) for r in have]
        entry: dict = {"runs": "shard" if stage in PER_SHARD else "once"}
        train = [r["training"].get(stage) for r in have] if stage in TRAINED else []
        if train and all(train):
            trained = [float(t["trained"]) for t in train]
            cap = budgets[TRAINED[stage]]
            free = [t / n for t, n in zip(trained, ns) if t < cap]
            entry.update(budget=TRAINED[stage], share=round(max(free), 3) if free else 0.7)
            if max(trained) < 1.1 * min(trained):
                # about the same galaxies trained on at every size (the budget's cap): training seconds cannot
                # be told apart from the per-epoch validation, which grows with N, so all is fitted on N
                train = []
        # training also grows with N where the training set stops at the cap (each epoch's validation on
        # the val split): fitted as its own per-galaxy term once some sizes are at the cap and some not
        with_n = bool(train) and all(train) and max(t / n for t, n in zip(trained, ns)) > 1.1 * min(
            t / n for t, n in zip(trained, ns))
        for part in ("wall_s", "cpu_s"):
            total = [float(r["steps"][stage][part]) for r in have]
            shares = [min(t["train_s"] / float(r["steps"][stage]["wall_s"]), 1.0) if train and all(train) else 0.0
                      for t, r in zip(train or [None] * len(have), have)]
            t_part = [v * sh for v, sh in zip(total, shares)]
            a, b = _line(ns, [v - t for v, t in zip(total, t_part)])  # fixed: once per command (stages.plan)
            ta = tb = tn = 0.0
            if train and all(train):
                ta, tb, tn = _nnls([[1.0] * len(ns), trained, ns], t_part) if with_n else [*_line(trained, t_part), 0.0]
            entry[part] = {"fixed": round(a + ta, 4), "per_galaxy": round(b + tn, 6), "per_trained": round(tb, 6)}
        costs[stage] = entry
    loads = [r.get("load", [None, None]) for r in runs]
    from features.sources.galaxy10 import Galaxy10Source

    size = Galaxy10Source.default_shard_size
    again: dict[str, list[str]] = {}
    for r in runs:
        for stage in r.get("restepped", {}):
            again.setdefault(stage, []).append(str(r["n"]))
    resteps = "".join(f"; {stage} measured again at {', '.join(ns)} (--restep)" for stage, ns in again.items())
    measured = {"on": f"rehearsals of {', '.join(str(r['n']) for r in runs)} galaxies (shards of {size:,}){resteps}",
                "command": "benchmarks/rehearse_galaxy10.py --n N, then --fit", "commit": runs[0].get("commit", "?"),
                "machine": f"{runs[0].get('cores', 2)} cores, load average "
                           + ", ".join(f"{lo[0]}-{lo[1]}" for lo in loads),
                "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    return costs, measured


def _commit() -> str:
    """The short commit of this checkout (``?`` outside git)."""
    import subprocess

    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or "?"


def restep(out: Path, model: str) -> dict:
    """Measure ``model``'s training stage again on the rehearsal in ``out`` and replace its row (see the
    module docstring); returns the new row."""
    import shutil

    from warehouse import Warehouse

    path = out / "rehearsal.json"
    run = json.loads(path.read_text())
    home = out / "home"
    shutil.rmtree(Path(Warehouse.open(home).cache_dir) / "gate", ignore_errors=True)
    cmd = [str(Path(sys.executable).with_name("astrovision")), "--home", str(home), "train", model]
    measured = run_measured(cmd)
    if measured["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {measured['rc']}")
    ours = [w for w in step_windows(home, measured["epoch0"]) if w["start"] >= 0]  # not the rehearsal's own runs
    row = per_step(measured, ours)[model]
    run.setdefault("restepped", {})[model] = {"before": run["steps"].get(model), "commit": _commit(),
                                              "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                              "load": round(os.getloadavg()[0], 1)}
    run["steps"][model] = row
    run["training"] = training_parts(home)
    path.write_text(json.dumps(run))
    return row


def check(out: Path, costs_path: Path | None = None) -> str:
    """Planner vs measured, per stage, for the rehearsal in ``out`` (its N, Galaxy10's shard size)."""
    from features.sources.galaxy10 import Galaxy10Source

    run = json.loads((out / "rehearsal.json").read_text())
    n = int(run["n"])
    plan_s = planner(n, Galaxy10Source.default_shard_size, costs_path)
    lines = [f"planner vs measured at {n} galaxies ({out})", "",
             "| stage | measured wall s | planner wall s | planner / measured | measured CPU s | planner CPU s | "
             "planner / measured |", "|---|---|---|---|---|---|---|"]
    tw = tp = cw = cp = 0.0
    for name, r in sorted(run["steps"].items(), key=lambda kv: -kv[1]["wall_s"]):
        if name in NOT_STEPS or name not in plan_s:
            continue
        pw, pc = plan_s[name]
        tw, tp, cw, cp = tw + r["wall_s"], tp + pw, cw + r["cpu_s"], cp + pc
        lines.append(f"| {name} | {r['wall_s']:.1f} | {pw:.1f} | {pw / r['wall_s']:.2f} | {r['cpu_s']:.1f} | "
                     f"{pc:.1f} | {pc / r['cpu_s'] if r['cpu_s'] else float('nan'):.2f} |")
    lines.append(f"| **steps** | **{tw:.1f}** | **{tp:.1f}** | **{tp / tw:.2f}** | **{cw:.1f}** | **{cp:.1f}** | "
                 f"**{cp / cw:.2f}** |")
    return "\n".join(lines)


def report(measured: dict, steps: dict[str, dict], home: Path, n: int, shard_size: int, cores: int) -> str:
    from warehouse import Warehouse

    wh = Warehouse.open(home)
    existing = wh.tables()
    plan_s = planner(n, shard_size)
    lines = ["| stage | runs | wall s | CPU s | CPU / wall / cores | peak RSS GB | tables: rows | bytes on disk | "
             "planner wall s | planner CPU s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in sorted(steps.items(), key=lambda kv: -kv[1]["wall_s"]):
        util = r["cpu_s"] / r["wall_s"] / cores if r["wall_s"] else 0.0
        tables = tables_of(name, existing) if name not in NOT_STEPS else []
        rows = ", ".join(f"{t}: {wh.count(t):,}" for t in tables)
        size = sum(_dir_bytes(wh.root / "lance" / f"{t}.lance") for t in tables)
        p = plan_s.get(name)
        lines.append(f"| {name} | {r['runs']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {util:.0%} | "
                     f"{r['peak_rss'] / 1e9:.2f} | {rows} | {size / 1e6:,.1f} MB | "
                     f"{'' if p is None else f'{p[0]:.1f}'} | {'' if p is None else f'{p[1]:.1f}'} |")
    util = measured["cpu_s"] / measured["wall_s"] / cores
    total = _dir_bytes(wh.root)
    pw, pc = sum(p[0] for p in plan_s.values()), sum(p[1] for p in plan_s.values())
    lines.append(f"| **whole command** | | **{measured['wall_s']:.1f}** | **{measured['cpu_s']:.1f}** | **{util:.0%}** | "
                 f"**{measured['peak_rss'] / 1e9:.2f}** | | **{total / 1e6:,.1f} MB** (home) | "
                 f"{pw:.1f} (steps) | {pc:.1f} (steps) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=GALAXY10_N, help="galaxies in the rehearsal file (default 17,736)")
    ap.add_argument("--path", type=Path, help="an existing Galaxy10 file (the real one): ingest it, write none")
    ap.add_argument("--out", type=Path, help="work directory (default: a new temporary one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write everything measured here (also <out>/rehearsal.json)")
    ap.add_argument("--fit", type=Path, nargs="+", metavar="OUT",
                    help="no run: fit the planner's per-stage costs on these rehearsal --out directories")
    ap.add_argument("--costs", type=Path, default=None,
                    help="with --fit: the costs file to update, with --check: to read (default stages/scale_costs.json)")
    ap.add_argument("--check", type=Path, metavar="OUT",
                    help="no run: planner vs measured per stage for the rehearsal in this --out directory")
    ap.add_argument("--restep", metavar="MODEL",
                    help="with --out: measure this training stage again on that rehearsal's warehouse and "
                         "replace its row in rehearsal.json")
    args = ap.parse_args(argv)
    if args.restep:
        if args.out is None:
            ap.error("--restep needs --out (a finished rehearsal)")
        os.environ.setdefault("PYTHONPATH", str(ROOT))
        row = restep(args.out, args.restep)
        before = json.loads((args.out / "rehearsal.json").read_text())["restepped"][args.restep]["before"] or {}
        print(f"{args.restep}: {row['wall_s']:.1f} s wall, {row['cpu_s']:.1f} CPU s (the rehearsal's row: "
              f"{before.get('wall_s', float('nan')):.1f} s wall, {before.get('cpu_s', float('nan')):.1f} CPU s)")
        return 0
    if args.check:
        print(check(args.check, args.costs))
        return 0
    if args.fit:
        from stages.plan import COSTS_FILE

        path = args.costs or COSTS_FILE
        costs, measured = fit_stage_costs(args.fit)
        raw = json.loads(path.read_text())
        raw["stage_costs"], raw["stage_costs_measured"] = costs, measured
        path.write_text(json.dumps(raw, indent=2) + "\n")
        print(f"wrote stage_costs of {len(costs)} stages to {path} ({measured['on']})")
        return 0
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    work = Path(args.out or tempfile.mkdtemp(prefix="astrovision-rehearsal-"))
    work.mkdir(parents=True, exist_ok=True)
    made = None
    h5 = args.path
    if h5 is None:
        h5 = work / "Galaxy10_DECals.h5"
        made = make_file(h5, args.n, args.seed)
        print(f"wrote {h5}: {made['n']} galaxies, {made['pairs']} near-duplicate pairs, classes "
              f"{made['class_counts']} ({made['render_s']:.0f} s, not timed below)", flush=True)
    import h5py

    with h5py.File(h5, "r") as f:
        n = int(f["images"].shape[0])
    home = work / "home"
    cmd = [str(Path(sys.executable).with_name("astrovision")), "--home", str(home), "ingest", "--source", "galaxy10",
           "--path", str(h5), "--all"]
    load0 = os.getloadavg()[0]
    measured = run_measured(cmd)
    steps = per_step(measured, step_windows(home, measured["epoch0"]))
    import psutil

    from features.sources.galaxy10 import Galaxy10Source

    cores = psutil.cpu_count() or 1
    print(f"\n# {' '.join(cmd)}\n# {n} galaxies; exit {measured['rc']}; {cores} cores; load average {load0:.1f} "
          f"before, {os.getloadavg()[0]:.1f} after\n")
    print(report(measured, steps, home, n, Galaxy10Source.default_shard_size, cores))

    commit = _commit()
    body = json.dumps({"n": n, "made": made, "measured": measured, "steps": steps, "cores": cores,
                       "load": [round(load0, 1), round(os.getloadavg()[0], 1)], "commit": commit,
                       "training": training_parts(home)})
    (work / "rehearsal.json").write_text(body)
    if args.json:
        args.json.write_text(body)
    return measured["rc"]


if __name__ == "__main__":
    raise SystemExit(main())
