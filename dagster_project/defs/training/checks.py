"""Asset-check results of the training domain (the checks are declared as ``check_specs`` on the assets).

* ``splits:no_leak`` (blocking): no galaxy id and no duplicate group appears in two splits.
* ``<model>:test_balanced_accuracy_floor`` (blocking): the test balanced accuracy reaches the floor
  ``floor_vs_chance / K`` stated in the check metadata. A randomly initialised backbone (a named
  baseline of the CPU demo) is not expected to clear a floor meant for pretrained weights: its check
  reports with WARN severity, which does not block downstream assets, and says why.
* ``predictions:every_version_predicted``: each registered model version has a prediction for every
  galaxy that has its input.
"""

from typing import TYPE_CHECKING

import dagster as dg

from models.splits import check_no_leak  # numpy only (models/__init__ imports lazily)
from warehouse import Warehouse, quote

if TYPE_CHECKING:  # stages.training imports torch and scikit-learn
    from stages.training import TrainOutcome

__all__ = ["floor_check", "leak_check", "predictions_check"]


def leak_check(wh: Warehouse, split_name: str) -> dg.AssetCheckResult:
    """Re-read the stored split set and look for ids or duplicate groups in two splits."""
    rows = wh.read("splits", columns=["galaxy_id", "split", "duplicate_group"],
                   where=f"split_name = {quote(split_name)}")
    problems = check_no_leak(rows.column("galaxy_id").to_pylist(), rows.column("split").to_pylist(),
                             rows.column("duplicate_group").to_pylist())
    groups = {g for g in rows.column("duplicate_group").to_pylist() if g}
    return dg.AssetCheckResult(
        check_name="no_leak",
        passed=not problems,
        metadata={
            "split_name": split_name,
            "leaks": len(problems),
            "threshold": 0,
            "duplicate_groups_checked": len(groups),
            "examples": "; ".join(problems[:5]) or "none",
        },
    )


def floor_check(out: "TrainOutcome") -> dg.AssetCheckResult:
    """The test balanced accuracy against the floor (WARN severity for a random-init backbone)."""
    random_init = "random init" in out.weights_origin
    k = len(out.classes)
    return dg.AssetCheckResult(
        check_name="test_balanced_accuracy_floor",
        passed=out.passed_floor,
        severity=dg.AssetCheckSeverity.WARN if random_init else dg.AssetCheckSeverity.ERROR,
        metadata={
            "test_balanced_accuracy": dg.MetadataValue.float(float(out.metrics["balanced_accuracy"])),
            "floor": dg.MetadataValue.float(float(out.floor)),
            "floor_rule": f"floor_vs_chance {out.config.floor_vs_chance:g} / {k} classes",
            "chance": dg.MetadataValue.float(1.0 / k),
            "weights_origin": out.weights_origin,
            "severity_note": ("random-init backbone: reported as a warning, does not block downstream"
                              if random_init else "blocks downstream assets when failed"),
        },
    )


def predictions_check(summary: dict[str, dict[str, int]]) -> dg.AssetCheckResult:
    """Every model version has predictions for all galaxies with input (none left to write)."""
    missing = {k: v["unavailable"] for k, v in summary.items() if v["unavailable"]}
    return dg.AssetCheckResult(
        check_name="every_version_predicted",
        passed=all(v["written"] + v["already"] > 0 for v in summary.values()),
        metadata={"model_versions": len(summary),
                  "galaxies_without_input": dg.MetadataValue.json(missing or {})},
    )
