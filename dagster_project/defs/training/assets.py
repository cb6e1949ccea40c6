"""Training assets: ``splits``, one asset per registered model (:func:`training_asset` over
:data:`models.registry.MODELS`: ``cnn``, ``efficientnet_b0``, ``dinov2_probe``, ``dinov2_finetune``,
``fusion``), ``predictions``.

Each asset is thin: it opens the warehouse, calls a plain function of :mod:`stages.training` /
:mod:`stages.predict` (which read and write through the warehouse with this run's id), and returns a
``MaterializeResult`` with the metrics, the confusion matrix and its check results.

A label set with fewer than two classes that have galaxies in every split (a tiny demo, a rare label)
trains nothing: the model's asset then materializes with ``skipped`` and the reason in its metadata and
a failed, WARN-severity gate check, instead of failing the run. Gate checks do not block: ``predictions``
runs after every model and writes those whose gate passed.

Run config: :mod:`dagster_project.defs.training.config` (every field has a default; model fields left
at ``None`` take the value of the chosen ``preset``).
"""

import base64
import json
from typing import TYPE_CHECKING

import dagster as dg

from dagster_project.defs.training.checks import (
    CALIBRATION_CHECK,
    GATE_CHECK,
    calibration_check,
    gate_check,
    leak_check,
    predictions_check,
    skipped_check,
)
from dagster_project.defs.training.config import (
    DINOv2FinetuneConfig,
    DINOv2ProbeConfig,
    FusionConfig,
    ImageModelConfig,
    PredictionsConfig,
    SplitsConfig,
    model_config,
)
from dagster_project.resources import WarehouseResource
from models.registry import MODELS

if TYPE_CHECKING:
    from models.registry import ModelSpec
    from stages.training import TrainOutcome

# models.config, stages.training and stages.predict import torch and scikit-learn: they are imported inside the asset
# bodies, so loading the definitions (``astrovision ingest``, ``dagster dev``) stays small.

__all__ = [
    "TRAINING_ASSETS",
    "DINOv2FinetuneConfig",
    "DINOv2ProbeConfig",
    "FusionConfig",
    "ImageModelConfig",
    "PredictionsConfig",
    "SplitsConfig",
    "cnn",
    "defs",
    "dinov2_finetune",
    "dinov2_probe",
    "efficientnet_b0",
    "fusion",
    "predictions",
    "splits",
    "training_asset",
]

GROUP = "training"


def _md_png(png: bytes, alt: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def _metadata(out: "TrainOutcome") -> dict:
    m = out.metrics
    recall = "\n".join(f"| {n} | {r:.3f} |" for n, r in m["per_class_recall"].items())
    from stages.train_result import TrainResult

    meta = {
        **TrainResult(out.name, out.version, out.tracking).to_metadata(),
        "label_column": out.label_column,
        "split_name": out.split_name,
        "preset": out.config.preset,
        "weights_origin": str(out.weights_origin),
        "random_init": out.weights_origin.is_random,
        "test_balanced_accuracy": dg.MetadataValue.float(float(m["balanced_accuracy"])),
        "test_balanced_accuracy_ci95": dg.MetadataValue.json([float(x) for x in out.interval]),
        "split_hash": out.split_hash,
        "split_version": out.split_version,
        "test_accuracy": dg.MetadataValue.float(float(m["accuracy"])),
        "test_macro_f1": dg.MetadataValue.float(float(m["macro_f1"])),
        "val_balanced_accuracy": dg.MetadataValue.float(float(out.val_metrics["balanced_accuracy"])),
        "per_class_recall": dg.MetadataValue.md("| class | recall |\n|---|---|\n" + recall),
        "confusion_matrix": _md_png(out.confusion_png, "confusion matrix"),
        "confusion_png": dg.MetadataValue.path(f"{out.artefact_dir}/confusion.png"),
        "train_seconds": dg.MetadataValue.float(float(out.train_seconds)),
        "n_train": out.n["train"], "n_val": out.n["val"], "n_test": out.n["test"],
        "gate_passed": out.passed_gate,
        "gate": out.gate.reason,
        "excluded_classes": dg.MetadataValue.json(out.excluded),
        "table_versions": dg.MetadataValue.json(out.table_versions),
        "config": dg.MetadataValue.json(json.loads(out.config.to_json())),
        "artefact": dg.MetadataValue.path(out.artefact_dir),
        "notes": "; ".join(out.notes) or "none",
    }
    if out.calibration is not None:
        cal = out.calibration
        meta["temperature"] = dg.MetadataValue.float(float(cal.temperature))
        meta["test_ece_before"] = dg.MetadataValue.float(float(cal.test["before"]["ece"]))
        meta["test_ece_after"] = dg.MetadataValue.float(float(cal.test["after"]["ece"]))
        meta["calibration"] = dg.MetadataValue.md(cal.table_md())
        meta["reliability_diagram"] = _md_png(out.reliability_png, "reliability diagram")
        meta["reliability_png"] = dg.MetadataValue.path(f"{out.artefact_dir}/reliability.png")
    if out.conformal:
        from models.conformal import coverage_table_md

        meta["conformal_alpha"] = dg.MetadataValue.float(float(out.conformal["alpha"]))
        meta["n_conformalize"] = out.conformal["n_conformalize"]
        for score, rep in out.conformal["scores"].items():
            meta[f"conformal_coverage_{score}"] = dg.MetadataValue.md(coverage_table_md(rep))
        meta["conformal_flags"] = dg.MetadataValue.json(out.conformal["scores"]["lac"]["flags"])
    if "ablation" in out.fit:
        from models.fusion import ablation_table_md

        meta["ablation"] = dg.MetadataValue.md(ablation_table_md(out.fit["ablation"]))
    if "modalities" in out.fit:
        meta["modalities"] = dg.MetadataValue.json(out.fit["modalities"])
        meta["modalities_missing_for_all"] = dg.MetadataValue.json(out.fit["modalities_missing_for_all"])
        meta["modality_coverage"] = dg.MetadataValue.json(out.fit["coverage"])
    for key in ("images_per_s", "data_wait_fraction", "best_epoch", "C"):
        if key in out.fit:
            meta[key] = out.fit[key]
    return meta


def _train(context: dg.AssetExecutionContext, warehouse: WarehouseResource, name: str, config: dg.Config) -> dg.MaterializeResult:
    from models.config import make_config
    from models.errors import TooFewClassesError
    from stages.train_result import TrainResult
    from stages.training import train_model

    cfg = make_config(name, config.preset, **config.overrides())
    try:
        out = train_model(warehouse.open(), name, cfg, log=context.log.info, run_id=context.run_id)
    except TooFewClassesError as exc:
        context.log.warning(f"{name} skipped: {exc}")
        return dg.MaterializeResult(
            metadata={**TrainResult(name, skipped_reason=str(exc)).to_metadata(), "label_column": cfg.label_column,
                      "excluded_classes": dg.MetadataValue.json(exc.excluded)},
            check_results=[skipped_check(str(exc), exc.excluded),
                           skipped_check(str(exc), exc.excluded, CALIBRATION_CHECK)])
    return dg.MaterializeResult(metadata=_metadata(out), check_results=[gate_check(out), calibration_check(out)])


def _calibration_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        CALIBRATION_CHECK, asset=asset, blocking=False,
        description="temperature scaling (fitted on val by NLL) does not raise the validation ECE "
        "(15 equal-width bins); ECE, NLL and Brier before/after on val and test in the metadata")


def _gate_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        GATE_CHECK, asset=asset, blocking=False,
        description="test balanced accuracy beats the majority-class and pixel baselines of the same run "
        "(paired bootstrap, one-sided; the rule and the numbers are in the metadata); a model that fails "
        "gets no predictions, the others still do")


@dg.asset(
    deps=["galaxies", "duplicate_groups"],
    group_name=GROUP,
    kinds={"lance"},
    check_specs=[dg.AssetCheckSpec("no_leak", asset="splits", blocking=True,
                                   description="no galaxy id and no duplicate group in two splits")],
)
def splits(context: dg.AssetExecutionContext, warehouse: WarehouseResource, config: SplitsConfig) -> dg.MaterializeResult:
    """Stratified train/val/test split of the labelled galaxies; duplicate groups never straddle splits."""
    from models.errors import TooFewClassesError
    from stages.training import build_splits

    wh = warehouse.open()
    try:
        out = build_splits(wh, label_column=config.label_column, seed=config.seed,
                           fractions=(config.train_fraction, config.val_fraction, config.test_fraction),
                           run_id=context.run_id)
    except TooFewClassesError as exc:
        context.log.warning(f"splits skipped: {exc}")
        return dg.MaterializeResult(
            metadata={"skipped": True, "reason": str(exc), "label_column": config.label_column},
            check_results=[dg.AssetCheckResult(check_name="no_leak", passed=True,
                                               metadata={"skipped": True, "reason": "no split set written"})])
    classes = sorted({c for v in out.class_counts.values() for c in v})
    table = "| class | train | val | test |\n|---|---|---|---|\n" + "\n".join(
        f"| {c} | " + " | ".join(str(out.class_counts.get(s, {}).get(c, 0)) for s in ("train", "val", "test")) + " |"
        for c in classes)
    return dg.MaterializeResult(
        metadata={
            "split_name": out.split_name,
            "label_column": out.label_column,
            "seed": out.seed,
            "train": out.counts["train"], "val": out.counts["val"], "test": out.counts["test"],
            "unlabelled_left_out": out.n_unlabelled,
            "galaxies_in_duplicate_groups": out.n_groups_shared,
            "class_counts": dg.MetadataValue.md(table),
            "excluded_classes": dg.MetadataValue.json(out.excluded),
            "table_version": out.table_version,
        },
        check_results=[leak_check(wh, out.split_name)],
    )


def training_asset(spec: "ModelSpec") -> dg.AssetsDefinition:
    """The training asset of a registered model (:data:`models.registry.MODELS`): named after it, reading its
    ``deps``, with its run-config class (:func:`dagster_project.defs.training.config.model_config`), its gate
    and calibration checks, and :func:`_train` as its body. Every training asset is made here, so a new kind
    needs no asset written by hand."""
    name = spec.name

    @dg.asset(name=name, deps=list(spec.deps), group_name=GROUP, kinds={spec.tool}, description=spec.description,
              check_specs=[_gate_spec(name), _calibration_spec(name)])
    def _asset(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
               config: model_config(name)) -> dg.MaterializeResult:  # type: ignore[valid-type]
        return _train(context, warehouse, name, config)

    return _asset


TRAINING_ASSETS: dict[str, dg.AssetsDefinition] = {name: training_asset(spec) for name, spec in MODELS.items()}
"""One training asset per registered model, by name."""
cnn = TRAINING_ASSETS["cnn"]
efficientnet_b0 = TRAINING_ASSETS["efficientnet_b0"]
dinov2_probe = TRAINING_ASSETS["dinov2_probe"]
dinov2_finetune = TRAINING_ASSETS["dinov2_finetune"]
fusion = TRAINING_ASSETS["fusion"]


@dg.asset(deps=list(MODELS), group_name=GROUP, kinds={"lance"},
          check_specs=[dg.AssetCheckSpec("every_version_predicted", asset="predictions",
                                         description="every model version that passed its gate has predictions")])
def predictions(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                config: PredictionsConfig) -> dg.MaterializeResult:
    """Class probabilities of every galaxy for every model version that passed its gate (only missing pairs computed)."""
    from stages.predict import predict_all

    wh = warehouse.open()
    summary = predict_all(wh, models=config.models or None, run_id=context.run_id, log=context.log.info,
                          batch_size=config.batch_size, device=config.device, mc_passes=config.mc_passes)
    return dg.MaterializeResult(
        metadata={
            "model_versions": len(summary),
            "predicted": dg.MetadataValue.json(sorted(k for k, v in summary.items() if not v["left_out"])),
            "left_out_gate_failed": dg.MetadataValue.json(sorted(k for k, v in summary.items() if v["left_out"])),
            "rows_written": sum(v["written"] for v in summary.values()),
            "per_version": dg.MetadataValue.json(summary),
            "rows_total": wh.count("predictions"),
        },
        check_results=[predictions_check(summary)],
    )


defs = dg.Definitions(assets=[splits, *TRAINING_ASSETS.values(), predictions])
