"""``astrovision train MODEL``: train a classifier from the warehouse and register it.

Runs ``training_job`` (the Dagster training assets, restricted to the chosen models, and ``predictions``
with ``--predict``), so a model trained here is a registry row like any other and its run, checks and
lineage show in the UI. The options travel as the assets' typed run config
(:func:`dagster_project.jobs.run_config_fields` names each model's); each applies to the models whose config has it.
``astrovision train --list`` shows the registry.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from features.errors import InputError
from features.weights import WeightsOrigin
from stages.train_result import TrainResult

from .home import warehouse_of

__all__ = ["register"]

ORDER = ("dinov2_probe", "cnn", "efficientnet_b0", "dinov2_finetune", "fusion")
"""Training order of ``all`` (the probe first: the fine-tune head starts from it); the names of
:data:`models.registry.MODELS`, spelled out so ``astrovision --help`` does not import torch."""
PRESET_NAMES = ("demo", "full")
"""The presets of :data:`models.config.PRESETS`."""

_OPTIONS = {
    "label_column": "--label", "seed": "--seed", "split_seed": "--split-seed", "epochs": "--epochs", "img_size": "--img-size",
    "batch_size": "--batch-size", "lr": "--lr", "max_train": "--max-train", "device": "--device",
    "encoder": "--encoder", "weights_path": "--weights", "allow_random_init": "--allow-random-init",
    "wandb_project": "--wandb-project",
}
"""Run-config field -> the option that sets it."""


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line, by run-config field."""
    given = {
        "label_column": args.label,
        "seed": args.seed,
        "split_seed": args.split_seed,
        "epochs": args.epochs,
        "img_size": args.img_size,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "max_train": args.max_train,
        "device": args.device,
        "encoder": args.encoder,
        "weights_path": args.weights,
        "allow_random_init": args.allow_random_init,
        "wandb_project": args.wandb_project,
    }
    return {k: v for k, v in given.items() if v is not None}


def _run_config(names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Each model's run config: the preset and the options its config class takes.

    Raises
    ------
    InputError
        An option that none of the chosen models takes (``--epochs`` for the probe alone).
    """
    from dagster_project.jobs import run_config_fields

    given = _overrides(args)
    ops: dict[str, Any] = {}
    used: set[str] = set()
    for name in names:
        fields = run_config_fields(name)
        config = {k: v for k, v in given.items() if k in fields}
        used |= set(config)
        ops[name] = {"config": {"preset": args.preset, **config}}
    unused = sorted(_OPTIONS[k] for k in set(given) - used)
    if unused:
        raise InputError(f"{', '.join(unused)} does not apply to {', '.join(names)}")
    if args.predict:
        ops["predictions"] = {"config": {"models": names}}
    return {"ops": ops}


def _print_outcome(row: dict[str, Any], result: TrainResult) -> None:
    """One model's result, from its materialization metadata and its registry row."""
    metrics = json.loads(row["metrics_json"])
    config = json.loads(row["config_json"])
    m, fit = metrics["test"], metrics.get("fit", {})
    random_note = "  <-- RANDOM INIT" if WeightsOrigin.of_record(row["weights_origin"]).is_random else ""
    print(f"{result.name} v{result.version}  (label {row['label_column']!r}, split {row['split_name']}, preset {config['preset']})")
    print(f"  weights: {row['weights_origin']}{random_note}")
    print("  settings: " + ", ".join(f"{k}={config[k]}" for k in  # each kind's config has its own fields
                                       ("img_size", "epochs", "batch_size", "lr", "max_train", "encoder") if k in config))
    ci = m.get("balanced_accuracy_ci95")
    ci_text = f" (95% bootstrap CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""
    print(f"  test: balanced accuracy {m['balanced_accuracy']:.4f}{ci_text}, accuracy {m['accuracy']:.4f}, "
          f"macro F1 {m['macro_f1']:.4f}")
    gate = json.loads(row["gate_json"])
    print(f"  gate: {'passed' if row['gate_passed'] else 'FAILED'} - {gate.get('reason', '')} ("
          + ", ".join(f"{k} {v['balanced_accuracy']:.3f}" for k, v in gate.get("baselines", {}).items()) + ")")
    excluded = json.loads(row["excluded_classes_json"])
    if excluded:
        print("  left out of the label set (too few galaxies for every split): "
              + ", ".join(f"{e['name']} (" + ", ".join(f"{s} {c}" for s, c in e.items() if s != "name") + ")"
                          for e in excluded))
    print("  per-class recall: " + ", ".join(f"{n} {r:.2f}" for n, r in m["per_class_recall"].items()))
    extra = ""
    if "images_per_s" in fit:
        extra = f", {fit['images_per_s']:.1f} images/s, data wait {100 * fit['data_wait_fraction']:.1f}%"
    print(f"  time: {row['train_seconds']:.1f} s{extra}")
    print(f"  artefacts: {row['artefact_path']}")
    if "ablation" in fit:
        from models.fusion import ablation_table_md

        print("  modalities: " + ", ".join(fit["modalities"])
              + (f"; MISSING for every galaxy: {', '.join(fit['modalities_missing_for_all'])}"
                 if fit["modalities_missing_for_all"] else ""))
        print("  ablation (test):\n    " + ablation_table_md(fit["ablation"]).replace("\n", "\n    "))
    for note in metrics.get("notes", []):
        print(f"  note: {note}")
    if result.tracking:
        print(f"  tracking: {result.tracking}")


def _num(value: float | None) -> str:
    """A registry metric to 4 decimals; ``-`` for a model without it (the U-Net has no balanced accuracy)."""
    return "-" if value is None else f"{value:.4f}"


def _cmd_train(args: argparse.Namespace) -> int:
    from dagster_project.runner import run_pipeline
    from service.cli import USER_ERRORS
    from stages.versions import get_model, list_models

    wh = warehouse_of(args)
    if args.list:
        rows = list_models(wh)
        if not rows:
            print("no trained models")
        for r in rows:
            print(f"{r['name']:<16} v{r['version']:<3} label={r['label_column']:<8} "
                  f"test_bacc={_num(r['test_balanced_accuracy'])}  gate={'passed' if r['gate_passed'] else 'FAILED'}  "
                  f"weights={r['weights_origin']}")
        return 0
    if not args.model:
        print("astrovision train: give a MODEL (or --list)", file=sys.stderr)
        return 2
    names = list(ORDER) if args.model == "all" else [args.model]
    failures: list[str] = []
    report = run_pipeline(wh, [], groups=["training"], assets=[*names, *(["predictions"] if args.predict else [])],
                          run_config=_run_config(names, args), progress=False, log=failures.append,
                          asset_logs=not args.quiet)
    message = report.user_error(USER_ERRORS)
    if message:
        raise InputError(message)
    trained: list[dict[str, Any]] = []
    for name in names:
        meta = report.metadata.get(name)
        if not meta:
            continue
        result = TrainResult.from_metadata(name, meta)
        if result.skipped:  # the label set cannot train this model: the user's input
            raise InputError(f"{name}: nothing trained: {result.skipped_reason}")
        trained.append(get_model(wh, name, result.version))
        _print_outcome(trained[-1], result)
    for step in report.skipped:
        print(f"{step}: skipped (an upstream step failed)")
    if "predictions" in report.metadata:
        summary = report.metadata["predictions"]["per_version"]
        print("predictions: " + json.dumps(summary))
        left_out = sorted(k for k, v in summary.items() if v["left_out"])
        if left_out:
            print(f"predictions left out (gate failed): {', '.join(left_out)}")
    for line in failures:
        print(line, file=sys.stderr)
    gates_ok = all(row["gate_passed"] or WeightsOrigin.of_record(row["weights_origin"]).is_random for row in trained)
    return 0 if report.ok and gates_ok else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train``."""
    p = subparsers.add_parser(
        "train",
        help="train a classifier from the warehouse (cnn, efficientnet_b0, dinov2_probe, dinov2_finetune, all)",
        description="Train a classifier on a leak-free split of the labelled galaxies and register it. "
        "Defaults are the CPU demo preset; --preset full gives the GPU settings. Each model is gated "
        "against a majority-class and a pixel baseline measured on the same test galaxies; --predict "
        "writes predictions only for models that pass. Exit status 1 when a model with pretrained or "
        "scratch weights fails its gate.",
    )
    p.add_argument("model", nargs="?", choices=[*ORDER, "all"], help="model to train ('all': every model)")
    p.add_argument("--list", action="store_true", help="list registered model versions and exit")
    p.add_argument("--label", default=None, metavar="COLUMN",
                   help="target column: 'label' (default) or a key of the catalogue's extra columns, e.g. ring")
    p.add_argument("--preset", default="demo", choices=PRESET_NAMES,
                   help="demo (CPU, small stamps, few epochs; default) or full (GPU)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--img-size", type=int, default=None, help="stamp side in pixels")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument("--max-train", type=int, default=None, help="cap on training galaxies (0: all)")
    p.add_argument("--seed", type=int, default=None, help="training seed (default 0)")
    p.add_argument("--split-seed", type=int, default=None,
                   help="seed of the split set to train on (default 0; built if missing)")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    p.add_argument("--encoder", default=None, help="DINOv2 encoder / embeddings table (default auto)")
    p.add_argument("--weights", default=None, metavar="PATH", help="local pretrained weights file")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--allow-random-init", dest="allow_random_init", action="store_true", default=None,
                   help="train from random init when no pretrained weights resolve (the demo preset does)")
    g.add_argument("--no-random-init", dest="allow_random_init", action="store_false",
                   help="fail when no pretrained weights resolve")
    p.add_argument("--wandb-project", default=None, metavar="PROJECT",
                   help="also log each run to this Weights & Biases project (needs the wandb extra; "
                        "default $ASTROVISION_WANDB_PROJECT, else off)")
    p.add_argument("--predict", action="store_true", help="also write predictions of every galaxy")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    p.set_defaults(func=_cmd_train)
