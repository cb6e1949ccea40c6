"""Segmentation assets: ``pseudo_labels`` -> ``unet`` -> ``masks`` (group ``segmentation``).

Thin: each opens the warehouse, calls one function of :mod:`stages.segmentation` and reports counts,
scores, the montage (image, Otsu, U-Net, truth per class) and its check. ``unet`` trains on the
classifiers' split set, so it runs after ``splits``; a warehouse too small to train on (no split set,
no usable pseudo-label in train or val) materializes ``unet`` with ``skipped`` and a WARN check, and
``masks`` then writes nothing.
"""

import base64

import dagster as dg
from pydantic import Field

from dagster_project.defs.segmentation.checks import (
    BEATS_OTSU,
    beats_otsu_check,
    failure_rate_check,
    masks_check,
    score_table,
)
from dagster_project.resources import WarehouseResource
from models.config import TRAIN_BUDGETS

# stages.segmentation imports torch, scipy and scikit-image: imported inside the asset bodies.

__all__ = ["MasksConfig", "PseudoLabelsConfig", "UNetConfig", "defs", "masks", "pseudo_labels", "unet"]

GROUP = "segmentation"


class PseudoLabelsConfig(dg.Config):
    """Run configuration of ``pseudo_labels``."""

    min_snr: float = Field(default=3.0, description="lower Otsu threshold must be this many sky RMS above the sky")
    smooth_fwhm: float = Field(default=3.0, description="Gaussian smoothing (px FWHM) before thresholding")
    max_failed_rate: float = Field(default=0.2, description="check: largest share of failed pseudo-labels")


class UNetConfig(dg.Config):
    """Run configuration of ``unet`` (the fields of ``models.segfit.SegFitConfig`` plus seed and split)."""

    size: int = Field(default=64, description="training stamp side (stored stamps are resized to it)")
    epochs: int = Field(default=8, description="maximum epochs")
    batch_size: int = Field(default=32, description="stamps per step")
    lr: float = Field(default=3e-3, description="peak learning rate (one-cycle)")
    base: int = Field(default=16, description="U-Net width of the first stage")
    depth: int = Field(default=3, description="U-Net poolings")
    augment: bool = Field(default=True, description="paired flips, rotations and crops")
    max_steps: int = Field(default=0, description="stop after this many steps (0: no limit); smoke tests")
    max_train: int = Field(default=TRAIN_BUDGETS["unet"], description="train on at most this many galaxies "
                           "(a seeded class-stratified sample of the usable train split; 0: all)")
    seed: int = Field(default=0, description="seeds the weights, the batches and the augmentation")
    split_name: str | None = Field(
        default=None, description="the split set (of the splits table) to train on; default: the classifiers' "
        "default set, label-s0-f70.15.15")


class MasksConfig(dg.Config):
    """Run configuration of ``masks``."""

    version: int = Field(default=0, description="U-Net version to predict with (0: the latest)")


def _md_png(png: bytes, alt: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


@dg.asset(deps=["galaxies"], group_name=GROUP, kinds={"lance"},
          check_specs=[dg.AssetCheckSpec("otsu_failure_rate", asset="pseudo_labels",
                                         description="few galaxies without a usable Otsu pseudo-label")])
def pseudo_labels(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                  config: PseudoLabelsConfig) -> dg.MaterializeResult:
    """Multi-Otsu background / disk / bulge pseudo-label of every galaxy (neighbours masked), flagged when Otsu fails."""
    from features.segmentation import OtsuOptions
    from features.segmentation.otsu import FAILED
    from stages.segmentation import build_pseudo_labels

    wh = warehouse.open()
    out = build_pseudo_labels(wh, options=OtsuOptions(min_snr=config.min_snr, smooth_fwhm=config.smooth_fwhm),
                              run_id=context.run_id, log=context.log.info)
    flags = (wh.read("pseudo_labels", columns=["flags"], where=f"method = '{out.method}'").column("flags").to_pylist()
             if wh.exists("pseudo_labels") else [])
    total, failed_all = len(flags), sum(1 for f in flags if f & FAILED)
    return dg.MaterializeResult(
        metadata={"method": out.method, "written": out.written, "already": out.already, "failed": out.failed,
                  "flag_counts": dg.MetadataValue.json(out.flag_counts), "seconds": out.seconds,
                  "per_galaxy_ms": 1000 * out.seconds / out.written if out.written else 0.0,
                  "table_version": out.table_version or 0},
        check_results=[failure_rate_check(failed_all, total, config.max_failed_rate)])


@dg.asset(deps=["pseudo_labels", "splits"], group_name=GROUP, kinds={"pytorch"},
          check_specs=[dg.AssetCheckSpec(BEATS_OTSU, asset="unet", blocking=False,
                                         description="U-Net mean IoU with the TRUE masks (test split) above the "
                                                     "Otsu pseudo-labels' on the same galaxies")])
def unet(context: dg.AssetExecutionContext, warehouse: WarehouseResource, config: UNetConfig) -> dg.MaterializeResult:
    """A small U-Net trained on the Otsu pseudo-labels with paired augmentation, scored against the true masks."""
    from models.errors import MissingInputError
    from models.segfit import SegFitConfig
    from stages.segmentation import train_unet

    cfg = SegFitConfig(size=config.size, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                       base=config.base, depth=config.depth, augment=config.augment, max_steps=config.max_steps,
                       max_train=config.max_train)
    try:
        out = train_unet(warehouse.open(), cfg, seed=config.seed, split_name=config.split_name,
                         run_id=context.run_id, log=context.log.info)
    except MissingInputError as exc:
        context.log.warning(f"unet skipped: {exc}")
        return dg.MaterializeResult(
            metadata={"skipped": True, "reason": str(exc)},
            check_results=[dg.AssetCheckResult(check_name=BEATS_OTSU, asset_key="unet", passed=False,
                                               severity=dg.AssetCheckSeverity.WARN,
                                               metadata={"skipped": True, "reason": str(exc)})])
    overall = out.scores["overall"]
    per_epoch = [h["seconds"] for h in out.fit["history"]]
    return dg.MaterializeResult(
        metadata={
            "model": f"unet v{out.version}", "version": out.version, "split_name": out.split_name,
            "unet_iou_truth": dg.MetadataValue.float(float(overall["unet_iou"])),
            "otsu_iou_truth": dg.MetadataValue.float(float(overall["otsu_iou"])),
            "gate_passed": out.gate_passed, "gate": out.gate["reason"],
            "scores": dg.MetadataValue.md(score_table(out.scores)),
            "montage": _md_png(out.montage_png, "image, Otsu, U-Net, truth per class"),
            "montage_png": dg.MetadataValue.path(f"{out.artefact_dir}/montage.png"),
            "n_train": out.n["train"], "n_val": out.n["val"], "n_test": out.n["test"],
            "train_seconds": out.train_seconds,
            "seconds_per_epoch": sum(per_epoch) / len(per_epoch) if per_epoch else 0.0,
            "best_epoch": out.fit["best_epoch"],
            "inference_galaxies_per_s": out.fit["inference_galaxies_per_s"],
            "table_versions": dg.MetadataValue.json(out.table_versions),
            "config": dg.MetadataValue.json({**out.config, "seed": out.seed}),
            "artefact": dg.MetadataValue.path(out.artefact_dir), "notes": "; ".join(out.notes)},
        check_results=[beats_otsu_check(out.gate)])


@dg.asset(deps=["unet"], group_name=GROUP, kinds={"lance"},
          check_specs=[dg.AssetCheckSpec("every_galaxy_masked", asset="masks",
                                         description="every galaxy has a mask of the U-Net version")])
def masks(context: dg.AssetExecutionContext, warehouse: WarehouseResource, config: MasksConfig) -> dg.MaterializeResult:
    """The predicted mask of every galaxy (PNG) with its area, centroid, ellipticity and bulge fraction."""
    from models.errors import MissingInputError
    from stages.segmentation import MODEL_NAME, write_masks

    wh = warehouse.open()
    try:
        out = write_masks(wh, version=config.version or None, run_id=context.run_id, log=context.log.info)
    except MissingInputError as exc:
        context.log.warning(f"masks skipped: {exc}")
        return dg.MaterializeResult(
            metadata={"skipped": True, "reason": str(exc)},
            check_results=[dg.AssetCheckResult(check_name="every_galaxy_masked", asset_key="masks", passed=False,
                                               severity=dg.AssetCheckSeverity.WARN,
                                               metadata={"skipped": True, "reason": str(exc)})])
    galaxies = wh.count("galaxies")
    masked = wh.count("masks", f"model_name = '{MODEL_NAME}' AND model_version = {out.model_version}")
    return dg.MaterializeResult(
        metadata={"model_version": out.model_version, "gate_passed": out.gate_passed, "written": out.written,
                  "already": out.already, "covers_centre_share": dg.MetadataValue.float(float(out.covers_centre_share)),
                  "mean_iou_with_otsu": dg.MetadataValue.float(float(out.mean_iou_otsu)),
                  "inference_galaxies_per_s": dg.MetadataValue.float(float(out.galaxies_per_s)),
                  "rows_total": wh.count("masks")},
        check_results=[masks_check(galaxies, masked, out.model_version)])


defs = dg.Definitions(assets=[pseudo_labels, unet, masks])
