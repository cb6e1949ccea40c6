"""Training assets: ``splits``, ``cnn``, ``efficientnet_b0``, ``dinov2_probe``, ``dinov2_finetune``, ``fusion``,
``predictions``.

Each asset is thin: it opens the warehouse, calls a plain function of :mod:`stages.training` /
:mod:`models.predict` (which read and write through the warehouse with this run's id), and returns a
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
)
from dagster_project.resources import WarehouseResource

if TYPE_CHECKING:
    from stages.training import TrainOutcome

# models.config, stages.training and models.predict import torch and scikit-learn: they are imported inside the asset
# bodies, so loading the definitions (``astrovision ingest``, ``dagster dev``) stays small.

__all__ = [
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


@dg.asset(deps=["splits", "galaxies"], group_name=GROUP, kinds={"pytorch"}, check_specs=[_gate_spec("cnn"), _calibration_spec("cnn")])
def cnn(context: dg.AssetExecutionContext, warehouse: WarehouseResource, config: ImageModelConfig) -> dg.MaterializeResult:
    """A compact 4-block CNN trained from scratch on stamps read from the warehouse."""
    return _train(context, warehouse, "cnn", config)


@dg.asset(deps=["splits", "galaxies"], group_name=GROUP, kinds={"pytorch"},
          check_specs=[_gate_spec("efficientnet_b0"), _calibration_spec("efficientnet_b0")])
def efficientnet_b0(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                    config: ImageModelConfig) -> dg.MaterializeResult:
    """timm EfficientNet-B0 (ImageNet weights when they resolve; random init only when allowed, and said)."""
    return _train(context, warehouse, "efficientnet_b0", config)


@dg.asset(deps=["splits", "embeddings"], group_name=GROUP, kinds={"sklearn"},
          check_specs=[_gate_spec("dinov2_probe"), _calibration_spec("dinov2_probe")])
def dinov2_probe(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                 config: DINOv2ProbeConfig) -> dg.MaterializeResult:
    """Logistic regression on stored DINOv2 embeddings (standardised), C chosen on the validation split."""
    return _train(context, warehouse, "dinov2_probe", config)


@dg.asset(deps=["splits", "galaxies", "dinov2_probe"], group_name=GROUP, kinds={"pytorch"},
          check_specs=[_gate_spec("dinov2_finetune"), _calibration_spec("dinov2_finetune")])
def dinov2_finetune(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                    config: DINOv2FinetuneConfig) -> dg.MaterializeResult:
    """DINOv2 encoder fine-tuned with layer-wise lr decay, head initialised from the probe."""
    return _train(context, warehouse, "dinov2_finetune", config)


@dg.asset(deps=["splits", "embeddings", "morphometrics", "photometry"], group_name=GROUP, kinds={"pytorch"},
          check_specs=[_gate_spec("fusion"), _calibration_spec("fusion")])
def fusion(context: dg.AssetExecutionContext, warehouse: WarehouseResource, config: FusionConfig) -> dg.MaterializeResult:
    """Late fusion of a frozen encoder's stored embeddings, morphometrics and photometry (one MLP per modality,
    missing-modality mask), with the ablation of every modality subset in its metadata."""
    return _train(context, warehouse, "fusion", config)


@dg.asset(deps=["cnn", "efficientnet_b0", "dinov2_probe", "dinov2_finetune", "fusion"], group_name=GROUP, kinds={"lance"},
          check_specs=[dg.AssetCheckSpec("every_version_predicted", asset="predictions",
                                         description="every model version that passed its gate has predictions")])
def predictions(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                config: PredictionsConfig) -> dg.MaterializeResult:
    """Class probabilities of every galaxy for every model version that passed its gate (only missing pairs computed)."""
    from models.predict import predict_all

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


defs = dg.Definitions(assets=[splits, cnn, efficientnet_b0, dinov2_probe, dinov2_finetune, fusion, predictions])
