"""Asset-check results of the segmentation domain (declared as ``check_specs`` on the assets).

* ``pseudo_labels:otsu_failure_rate``: the share of galaxies whose Otsu pseudo-label failed (blank, no
  bimodality, nothing at the centre) is at most ``max_failed_rate``.
* ``unet:beats_otsu`` (not blocking): the U-Net's mean IoU with the demo's TRUE masks on the test split
  is above the Otsu pseudo-labels' on the same galaxies; both, per class, are in the metadata. Without
  true masks (no demo galaxies in the test split) it fails with WARN severity: nothing was measured.
* ``masks:every_galaxy_masked``: every galaxy has a mask row for the U-Net version.
"""

from typing import Any

import dagster as dg

__all__ = ["BEATS_OTSU", "beats_otsu_check", "failure_rate_check", "masks_check", "score_table"]

BEATS_OTSU = "beats_otsu"


def score_table(scores: dict[str, Any]) -> str:
    """Markdown table of U-Net and Otsu IoU / Dice against truth, per class then overall."""
    lines = ["| class | n | U-Net IoU | Otsu IoU | U-Net Dice | Otsu Dice |", "|---|---|---|---|---|---|"]
    items = [*scores.get("per_class", {}).items(), ("all (Otsu ok)", scores.get("overall", {})),
             ("all, Otsu failures too", scores.get("all_galaxies", {}))]
    for name, s in items:
        if s.get("n"):
            lines.append(f"| {name} | {s['n']} | {s['unet_iou']:.3f} | {s['otsu_iou']:.3f} | {s['unet_dice']:.3f} | "
                         f"{s['otsu_dice']:.3f} |")
    return "\n".join(lines)


def failure_rate_check(failed: int, total: int, max_failed_rate: float) -> dg.AssetCheckResult:
    """Share of pseudo-labels that failed, against ``max_failed_rate``."""
    rate = failed / total if total else 0.0
    return dg.AssetCheckResult(check_name="otsu_failure_rate", asset_key="pseudo_labels",
                               passed=bool(rate <= max_failed_rate),
                               metadata={"failed": failed, "total": total, "failed_rate": rate,
                                         "max_failed_rate": max_failed_rate})


def beats_otsu_check(gate: dict[str, Any]) -> dg.AssetCheckResult:
    """The U-Net's gate (see the module docstring)."""
    measured = bool(gate.get("overall", {}).get("n"))
    return dg.AssetCheckResult(
        check_name=BEATS_OTSU, asset_key="unet", passed=bool(gate["passed"]),
        severity=dg.AssetCheckSeverity.ERROR if measured else dg.AssetCheckSeverity.WARN,
        metadata={"rule": gate["rule"], "reason": gate["reason"],
                  "unet_iou": dg.MetadataValue.float(float(gate.get("overall", {}).get("unet_iou", float("nan")))),
                  "otsu_iou": dg.MetadataValue.float(float(gate.get("overall", {}).get("otsu_iou", float("nan")))),
                  "iou_difference": dg.MetadataValue.json(gate.get("iou_difference", {})),
                  "scores": dg.MetadataValue.md(score_table(gate))})


def masks_check(galaxies: int, masked: int, version: int) -> dg.AssetCheckResult:
    """Every galaxy has a mask of this U-Net version."""
    return dg.AssetCheckResult(check_name="every_galaxy_masked", asset_key="masks", passed=masked >= galaxies,
                               metadata={"galaxies": galaxies, "masked": masked, "model_version": version})
