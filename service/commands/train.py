"""``astrovision train MODEL``: train a classifier from the warehouse and register it.

Runs the same plain functions as the Dagster training assets (:func:`stages.training.train_model`), so a
model trained here is a registry row like any other; ``--predict`` then writes its predictions.
``astrovision train --list`` shows the registry.
"""

from __future__ import annotations

import argparse
import json
import sys

from warehouse import Warehouse

__all__ = ["register"]

ORDER = ("dinov2_probe", "cnn", "efficientnet_b0", "dinov2_finetune")
"""Training order of ``all`` (the probe first: the fine-tune head starts from it); the names of
:data:`models.registry.MODELS`, spelled out so ``astrovision --help`` does not import torch."""
PRESET_NAMES = ("demo", "full")
"""The presets of :data:`models.config.PRESETS`."""


def _overrides(args: argparse.Namespace) -> dict:
    return {
        "label_column": args.label,
        "seed": args.seed,
        "epochs": args.epochs,
        "img_size": args.img_size,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "max_train": args.max_train,
        "device": args.device,
        "encoder": args.encoder,
        "weights_path": args.weights,
        "allow_random_init": args.allow_random_init,
    }


def _print_outcome(out) -> None:
    m = out.metrics
    random_note = "  <-- RANDOM INIT" if "random init" in out.weights_origin else ""
    print(f"{out.name} v{out.version}  (label {out.label_column!r}, split {out.split_name}, preset {out.config.preset})")
    print(f"  weights: {out.weights_origin}{random_note}")
    print("  settings: " + ", ".join(f"{k}={getattr(out.config, k)}" for k in
                                       ("img_size", "epochs", "batch_size", "lr", "max_train", "encoder")))
    print(f"  test: balanced accuracy {m['balanced_accuracy']:.4f}, accuracy {m['accuracy']:.4f}, "
          f"macro F1 {m['macro_f1']:.4f}")
    g = out.gate
    print(f"  gate: {'passed' if g.passed else 'FAILED'} - {g.reason} ("
          + ", ".join(f"{k} {v['balanced_accuracy']:.3f}" for k, v in g.baselines.items()) + ")")
    if out.excluded:
        print("  left out of the label set (too few galaxies for every split): "
              + ", ".join(f"{n} ({', '.join(f'{s} {c}' for s, c in per.items())})" for n, per in out.excluded.items()))
    print("  per-class recall: " + ", ".join(f"{n} {r:.2f}" for n, r in m["per_class_recall"].items()))
    extra = ""
    if "images_per_s" in out.fit:
        extra = f", {out.fit['images_per_s']:.1f} images/s, data wait {100 * out.fit['data_wait_fraction']:.1f}%"
    print(f"  time: {out.train_seconds:.1f} s{extra}")
    print(f"  artefacts: {out.artefact_dir}")
    for note in out.notes:
        print(f"  note: {note}")


def _cmd_train(args: argparse.Namespace) -> int:
    from models.versions import list_models
    from stages.training import train_model

    wh = Warehouse.open()
    if args.list:
        rows = list_models(wh)
        if not rows:
            print("no trained models")
        for r in rows:
            print(f"{r['name']:<16} v{r['version']:<3} label={r['label_column']:<8} "
                  f"test_bacc={r['test_balanced_accuracy']:.4f}  gate={'passed' if r['gate_passed'] else 'FAILED'}  "
                  f"weights={r['weights_origin']}")
        return 0
    if not args.model:
        print("astrovision train: give a MODEL (or --list)", file=sys.stderr)
        return 2
    names = list(ORDER) if args.model == "all" else [args.model]
    log = (lambda msg: print(f"  {msg}", file=sys.stderr)) if not args.quiet else None
    outcomes = []
    for name in names:
        from models.config import make_config

        cfg = make_config(name, args.preset, **_overrides(args))
        out = train_model(wh, name, cfg, log=log)
        outcomes.append(out)
        _print_outcome(out)
    if args.predict:
        from models.predict import predict_all

        summary = predict_all(wh, models=names, log=log)
        print("predictions: " + json.dumps(summary))
        left_out = sorted(k for k, v in summary.items() if v["left_out"])
        if left_out:
            print(f"predictions left out (gate failed): {', '.join(left_out)}")
    return 0 if all(o.passed_gate or "random init" in o.weights_origin for o in outcomes) else 1


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
    p.add_argument("--seed", type=int, default=None, help="seed of the split and of training (default 0)")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    p.add_argument("--encoder", default=None, help="DINOv2 encoder / embeddings table (default auto)")
    p.add_argument("--weights", default=None, metavar="PATH", help="local pretrained weights file")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--allow-random-init", dest="allow_random_init", action="store_true", default=None,
                   help="train from random init when no pretrained weights resolve (the demo preset does)")
    g.add_argument("--no-random-init", dest="allow_random_init", action="store_false",
                   help="fail when no pretrained weights resolve")
    p.add_argument("--predict", action="store_true", help="also write predictions of every galaxy")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    p.set_defaults(func=_cmd_train)
