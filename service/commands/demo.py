"""``astrovision demo``: render the synthetic survey, ingest it and materialize every asset, offline."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import TYPE_CHECKING

from features.errors import InputError
from features.weights import WeightsOrigin
from stages.results import Skipped

from .execution import add_execution_args, execution_from
from .home import warehouse_of

if TYPE_CHECKING:
    from dagster_project.executors import Execution
    from dagster_project.runner import PipelineReport
    from warehouse import Warehouse

__all__ = ["check_sizes", "default_shard_size", "register", "run_demo"]

NEXT_STEPS = """\
Try next:
  astrovision tables
  astrovision sql "SELECT label_name, count(*) AS n FROM galaxies GROUP BY 1 ORDER BY 2 DESC"
  astrovision show {name}:000001 --png galaxy.png
  astrovision similar {name}:000001 -k 8 --montage lookalikes.png
  astrovision report --out report.html   # maps, correlations with physics, classifiers: one static page
  astrovision ui            # lineage, runs, checks and re-materialization in the Dagster UI
"""


def _per_split(per: dict[str, int]) -> str:
    return ", ".join(f"{s} {n}" for s, n in per.items())


def _uncertainty_lines(metrics: dict) -> list[str]:
    """Temperature scaling and conformal coverage of one model version (test split), when recorded."""
    out: list[str] = []
    abl = metrics.get("fit", {}).get("ablation")
    if abl:
        gains = [r["modalities"] for r in abl["rows"] if r.get("gain")]
        missing = metrics["fit"].get("modalities_missing_for_all") or []
        out.append(f"  {'':<16}      modalities {'+'.join(metrics['fit']['modalities'])}"
                   + (f" (MISSING for every galaxy: {', '.join(missing)})" if missing else "")
                   + f"; ablation: best single {abl['best_single']}; gain over it (95% paired CI excludes 0): "
                   + (", ".join(gains) if gains else "none claimed"))
        out += [f"  {'':<16}      note: {n}" for n in metrics.get("notes", []) if "photometry" in n or "MISSING" in n]
    fit = metrics.get("fit", {})
    if fit.get("backbone"):  # a fine-tune: which encoder, and against the probe it started from
        v = fit.get("vs_probe")
        out.append(f"  {'':<16}      fine-tuned backbone {fit['backbone']}" + (
            f"; vs {v['probe']} on the same {v['n_test']} test galaxies: {v['difference']:+.3f} [95% paired CI "
            f"{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}] ({'beats' if v['beats_probe'] else 'does not beat'} "
            "the probe)" if v else "; no probe of this encoder to compare with"))
    cal = metrics.get("calibration")
    if cal:
        t = cal["test"]
        out.append(f"  {'':<16}      temperature {cal['temperature']:.2f}: test ECE {t['before']['ece']:.3f} -> "
                   f"{t['after']['ece']:.3f}, NLL {t['before']['nll']:.3f} -> {t['after']['nll']:.3f}"
                   + ("  (RAISED the val ECE)" if cal["val_ece_raised"] else ""))
    conf = metrics.get("conformal", {}).get("scores", {}).get("lac")
    if conf and conf["marginal"] and conf["class_conditional"]:
        m, c = conf["marginal"], conf["class_conditional"]
        worst = min(((n, d) for n, d in m["per_class"].items() if d["n"]), key=lambda x: x[1]["coverage"],
                    default=None)
        low = f", lowest class {worst[0]} {worst[1]['coverage']:.2f} (n={worst[1]['n']})" if worst else ""
        out.append(f"  {'':<16}      conformal (LAC, alpha {metrics['conformal']['alpha']:g}): coverage marginal "
                   f"{m['coverage']:.3f} (size {m['mean_size']:.2f}{low}), class-conditional {c['coverage']:.3f} "
                   f"(size {c['mean_size']:.2f}); {len(conf['flags'])} flag(s)")
    return out


def _model_lines(wh: Warehouse, report: PipelineReport | None) -> list[str]:
    """Each registered model with its gate, the classes left out, skipped models and the predictions."""
    lines: list[str] = []
    rows = wh.read_polars("models").sort(["name", "version"]).to_dicts() if wh.exists("models") else []
    segmenters = [r for r in rows if r["kind"] == "segmentation"]
    rows = [r for r in rows if r["kind"] != "segmentation"]
    if rows:
        lines.append("\nModels (test split, 95% bootstrap CI of the balanced accuracy; gate: beat the majority-class "
                     "and pixel baselines measured on the same test galaxies in this run, one-sided 95% paired "
                     "bootstrap):")
        excluded: dict[str, list[str]] = {}
        for row in rows:
            gate = json.loads(row["gate_json"])
            verdict = "gate passed" if row["gate_passed"] else f"gate FAILED: {gate.get('reason', '')}"
            base = ", ".join(f"{k} {v['balanced_accuracy']:.3f}" for k, v in gate.get("baselines", {}).items())
            low, high = row.get("test_balanced_accuracy_low"), row.get("test_balanced_accuracy_high")
            ci = f" [95% CI {low:.3f}-{high:.3f}]" if low is not None and high is not None else ""
            lines.append(f"  {row['name']:<16} v{row['version']:<3} balanced accuracy "
                         f"{row['test_balanced_accuracy']:.3f}{ci}  (baselines: {base})  [{row['weights_origin']}]")
            lines.append(f"  {'':<16}      {verdict}")
            lines += _uncertainty_lines(json.loads(row["metrics_json"]))
            for item in json.loads(row["excluded_classes_json"]):
                per = {k: v for k, v in item.items() if k != "name"}
                excluded.setdefault(f"{item['name']} ({_per_split(per)})", []).append(f"{row['name']} v{row['version']}")
        if excluded:
            lines.append("  Left out of the label set (too few galaxies for every split; the rare-class rule):")
            lines += [f"    {cls}: {', '.join(models)}" for cls, models in excluded.items()]
    skipped: dict[str, list[str]] = {}
    for asset, meta in (report.metadata if report else {}).items():
        skip = Skipped.of(meta)
        if skip:
            skipped.setdefault(skip.reason, []).append(asset)
    if skipped:
        lines.append("\nSkipped (nothing trained):")
        lines += [f"  {', '.join(assets)}: {reason}" for reason, assets in skipped.items()]
    if rows:
        done = (wh.sql("SELECT model_name, model_version, count(*) AS n FROM predictions GROUP BY 1, 2").to_dicts()
                if wh.exists("predictions") else [])
        counts = {f"{r['model_name']} v{r['model_version']}": r["n"] for r in done}
        failed = [f"{r['name']} v{r['version']}" for r in rows if not r["gate_passed"]]
        written = ", ".join(f"{k} ({n} galaxies)" for k, n in counts.items()) or "none"
        lines.append(f"\nPredictions written for: {written}")
        if failed:
            lines.append(f"Predictions left out (gate failed): {', '.join(failed)}")
    if segmenters:
        lines.append("\nSegmentation (test split, mean IoU with the TRUE masks; gate: U-Net above its Otsu "
                     "pseudo-labels):")
        for row in segmenters:
            gate = json.loads(row["gate_json"])
            lines.append(f"  {row['name']:<16} v{row['version']:<3} "
                         f"{'gate passed' if row['gate_passed'] else 'gate FAILED'}: {gate.get('reason', '')}")
        if wh.exists("masks"):
            n = wh.sql("SELECT count(*) AS n FROM masks").to_dicts()[0]["n"]
            lines.append(f"  masks: {n} rows (SQL view galaxy_masks)")
    return lines


def _analysis_lines(wh: Warehouse) -> list[str]:
    """Cross-validated R^2 of each quantity from every encoder and the pixel baseline, one line per quantity."""
    if not wh.exists("representation_analysis") or wh.count("representation_analysis") == 0:
        return []
    rows = wh.sql("SELECT quantity, encoder, value, ci_low, ci_high FROM representation_analysis "
                  "WHERE statistic = 'r2_cv' ORDER BY quantity, encoder", limit=None).to_dicts()
    by: dict[str, list[str]] = {}
    for r in rows:
        by.setdefault(r["quantity"], []).append(f"{r['encoder']} {r['value']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]")
    lines = [f"\nWhat the embeddings encode (cross-validated R^2, 95% CI, folds grouped by duplicate group; "
             f"table representation_analysis, figures in {wh.local_root / 'analysis'}):"]
    return lines + [f"  {q:<22} {'   '.join(v)}" for q, v in by.items()]


def _ssl_note(wh: Warehouse, encoder: str) -> str:
    """One line on an encoder the ``ssl_encoder`` asset trained here: why, on what, how long."""
    from stages.ssl import read_record

    rec = read_record(wh, encoder) or {}
    secs = rec.get("epoch_seconds") or []
    cost = f", {len(secs)} epochs in {sum(secs):.0f} s" if secs else ""
    n, trained = rec.get("n_images", "?"), rec.get("n_trained")
    on = (f"{trained} of this warehouse's {n} galaxies (budget max_images {rec.get('max_images')})"
          if trained and trained != n else f"this warehouse's {n} galaxies")
    return ("no in-domain (Zoobot) and no DINOv2 weights here, so this encoder was self-supervised (SimCLR) on "
            f"{on}, start: {rec.get('init', '?')}{cost}")


def _summary(wh: Warehouse, elapsed: float, contact_sheet: str | None, source: str = "demo",
             report: PipelineReport | None = None) -> str:
    lines = [f"\nDemo finished in {elapsed / 60:.1f} min; warehouse at {wh.root}", "", "Tables:"]
    for name in wh.tables():
        ds = wh.dataset(name)
        lines.append(f"  {name:<28} {ds.count_rows():>7} rows  (version {ds.version})")
    emb = [t for t in wh.tables() if t.startswith("embeddings_")]
    from warehouse import search

    used = search.pick_table(wh) if emb else None
    for table in emb:
        origin = wh.sql(f"SELECT DISTINCT encoder, weights_origin FROM {table}").to_dicts()
        for row in origin:
            kind = WeightsOrigin(row["weights_origin"])
            if kind.is_random:
                note = "RANDOM weights: a named baseline, not DINOv2 (put DINOv2 weights in place to use them)"
            elif kind is WeightsOrigin.SELF_SUPERVISED:
                note = _ssl_note(wh, row["encoder"])
            else:
                from features.embeddings import ENCODERS

                spec = ENCODERS.get(row["encoder"])
                kind = f"in-domain pretrained: {spec.description}; " if spec is not None and spec.in_domain else ""
                note = f"{kind}weights from {row['weights_origin']}"
            role = " [used by search and the probe]" if table == used and len(emb) > 1 else ""
            have, of = wh.count(table), wh.count("galaxies")
            sampled = have < of and WeightsOrigin(row["weights_origin"]).is_random
            part = f" ({have:,} of the {of:,} galaxies: the baseline's sample)" if sampled else ""
            lines.append(f"\nEmbeddings: {row['encoder']}{role} - {note}{part}")
    lines += _analysis_lines(wh)
    lines += _model_lines(wh, report)
    if contact_sheet:
        lines.append(f"\nContact sheet: {contact_sheet}")
    return "\n".join(lines) + "\n\n" + NEXT_STEPS.format(name=source)


def default_shard_size(n: int, cores: int, largest: int = 200) -> int:
    """Galaxies per shard of a demo of ``n``: at most ``largest``, in a number of shards that is a
    multiple of ``cores``, so shard runs side by side (``--workers`` = the cores) finish together instead
    of leaving a last shard alone on one core (600 galaxies on 2 cores: 4 shards of 150). The default
    ``--workers 1`` runs them one after another.
    """
    per_round = max(1, cores) * largest
    shards = max(1, cores) * math.ceil(n / per_round)
    return max(1, math.ceil(n / min(shards, n)))


def check_sizes(n: int | None, shard_size: int | None) -> None:
    """``--n`` and ``--shard-size`` must be positive integers when given (None: the defaults).

    Raises
    ------
    features.errors.InputError
        One line naming the option and the value; nothing has been written then.
    """
    for option, value in (("--n", n), ("--shard-size", shard_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"demo: {option} must be a positive integer (at least 1); got {value!r}")


def run_demo(wh: Warehouse, n: int | None = None, seed: int = 0, shard_size: int | None = None,
             groups: list[str] | None = None, progress: bool = True, replace: bool = False,
             name: str | None = None, healpix_nside: int | None = None,
             execution: Execution | None = None) -> int:
    """Render, register (as source ``name``, default ``demo``), materialize and summarise the demo survey;
    returns the exit status.

    ``replace`` replaces a source of that name holding other data (another size or seed; see
    :func:`stages.sources.register_source`). ``healpix_nside`` shards the survey by HEALPix pixel.
    ``execution``: shards at once and the executor (:class:`dagster_project.executors.Execution`; default
    one shard after another, in process).

    Any size from one galaxy up finishes: a survey too small to give two classes a galaxy in each of
    train, val and test trains no model (the summary says which were skipped and why), and classes too
    rare for every split are left out of the models' label sets (named in the registry and the summary).

    Raises
    ------
    features.errors.InputError
        ``n``, ``shard_size`` below 1 or ``seed`` negative (checked before anything is written).
    """
    from dagster_project.runner import run_pipeline, start_warm_imports
    from features.sources.sky import check_nside
    from features.sources.synthetic import DEFAULT_N, SyntheticSurvey, contact_sheet
    from stages.photometry import demo_catalogue
    from stages.sources import register_source, source_lock

    check_sizes(n, shard_size)
    if healpix_nside is not None:
        check_nside(healpix_nside)  # before anything is written
    t0 = time.perf_counter()
    if execution is None or (execution.in_process and execution.workers == 1):
        start_warm_imports(groups)  # beside the rendering below, which keeps every core busy
    survey = SyntheticSurvey(n=DEFAULT_N if n is None else n, seed=seed)
    if shard_size is None and healpix_nside is None:
        from dagster_project.executors import cores

        shard_size = default_shard_size(len(survey), cores())
    survey.name = name
    catalogue = demo_catalogue(wh, survey)
    sheet = wh.local_root / "demo_contact_sheet.png"
    contact_sheet(survey, sheet)
    params = {"n": len(survey), "seed": seed, "photometry_catalog": str(catalogue)}
    with source_lock(wh, survey.name, on_wait=lambda msg: print(msg, file=sys.stderr, flush=True)):
        shards = register_source(wh, survey, shard_size=shard_size, params=params, replace=replace,
                                 healpix_nside=healpix_nside)
        print(f"demo: {len(survey)} synthetic galaxies (seed {seed}) in {len(shards)} shard(s) -> {wh.root}")
        report = run_pipeline(wh, shards, groups=groups, progress=progress, execution=execution)
    print(_summary(wh, time.perf_counter() - t0, str(sheet), survey.name, report))
    if report.checks_failed:
        print("Checks that failed:\n  " + "\n  ".join(report.checks_failed))
        skipped = {k for k, v in report.metadata.items() if Skipped.of(v)}
        if any("beats_baselines" in c and c.split(":")[0] not in skipped for c in report.checks_failed):
            print("  (a model that misses its gate only keeps its own predictions out; one marked [random init] "
                  "above has no pretrained weights on this machine and is not expected to pass)")
    if report.failed:
        print("Steps that failed:\n  " + "\n  ".join(f"{k}: {v}" for k, v in report.failed.items()))
        return 1
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import polars as pl

    pl.Config.set_tbl_hide_dataframe_shape(True)
    check_sizes(args.n, args.shard_size)
    if args.healpix_nside is not None:
        from features.sources.sky import check_nside

        check_nside(args.healpix_nside)  # before the warehouse is created
    execution = execution_from(args)
    return run_demo(warehouse_of(args), n=args.n, seed=args.seed, shard_size=args.shard_size,
                    groups=args.group or None, replace=args.replace, name=args.name,
                    healpix_nside=args.healpix_nside, execution=execution)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on the synthetic demo survey (offline)")
    p.add_argument("--n", type=int, help="number of galaxies, at least 1 (default: the documented demo size, 600)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-size", type=int,
                   help="galaxies per shard, at least 1 (default: at most 200, in a multiple of the cores' "
                        "number of shards)")
    p.add_argument("--group", action="append", help="only assets of this Dagster group (repeatable)")
    p.add_argument("--healpix-nside", type=int, default=None,
                   help="shard by sky position: one shard per HEALPix pixel at this nside (a power of two)")
    p.add_argument("--name", help="source name, prefix of the galaxy ids (default: demo)")
    p.add_argument("--replace", action="store_true",
                   help="replace a source of this name holding other data (another --n or --seed)")
    add_execution_args(p)
    p.set_defaults(func=_cmd_demo)
