"""Asset-check results of the training domain (the checks are declared as ``check_specs`` on the assets).

* ``splits:no_leak`` (blocking): no galaxy id and no duplicate group (as ``galaxies`` holds them now)
  appears in two splits.
* ``<model>:beats_baselines`` (not blocking): the model's test balanced accuracy beats the majority-class
  and pixel baselines measured on the same test galaxies in the same run (paired bootstrap, one-sided;
  :func:`models.baselines.gate`); the rule, the baselines and their intervals are in the check metadata.
  A model that fails keeps *its own* predictions out (``predictions`` reads the verdict from the
  registry), not everyone else's, so the check does not block. Severity WARN for a random-init backbone
  (a named baseline of the CPU demo) and for a skipped model (too few classes), ERROR otherwise.
* ``<model>:scaling_keeps_val_ece`` (not blocking, WARN): temperature scaling fitted on val by NLL did not
  raise the validation ECE (it may: NLL and ECE are different objectives); scores before/after attached.
* ``predictions:every_version_predicted``: each version that passed its gate has a prediction for every
  galaxy that has its input; the versions left out are listed.
"""

from typing import TYPE_CHECKING

import dagster as dg

from stages.split_leaks import split_leaks  # numpy only (models/__init__ imports lazily)
from warehouse import Warehouse

if TYPE_CHECKING:  # stages.training imports torch and scikit-learn
    from stages.training import TrainOutcome

__all__ = ["CALIBRATION_CHECK", "GATE_CHECK", "calibration_check", "gate_check", "leak_check", "predictions_check",
           "skipped_check"]

GATE_CHECK = "beats_baselines"
CALIBRATION_CHECK = "scaling_keeps_val_ece"


def leak_check(wh: Warehouse, split_name: str) -> dg.AssetCheckResult:
    """Re-read the stored split set and look for ids in two splits, and for duplicate groups in two splits
    as ``galaxies`` groups them now (:func:`stages.split_leaks.split_leaks`), not as the copy in ``splits``."""
    problems, groups = split_leaks(wh, split_name)
    return dg.AssetCheckResult(
        check_name="no_leak",
        passed=not problems,
        metadata={
            "split_name": split_name,
            "leaks": len(problems),
            "threshold": 0,
            "duplicate_groups_checked": groups,
            "groups_from": "galaxies.duplicate_group (current version)",
            "examples": "; ".join(problems[:5]) or "none",
        },
    )


def gate_check(out: "TrainOutcome") -> dg.AssetCheckResult:
    """The model's gate against the same-run baselines (WARN severity for a random-init backbone)."""
    g = out.gate
    random_init = out.weights_origin.is_random
    meta = {
        "rule": g.rule,
        "split": g.split,
        "n": g.n,
        "confidence": dg.MetadataValue.float(g.confidence),
        "resamples": g.n_boot,
        "balanced_accuracy": dg.MetadataValue.float(float(g.balanced_accuracy)),
        "interval": dg.MetadataValue.json(list(g.interval)),
        "reason": g.reason,
        "weights_origin": str(out.weights_origin),
        "excluded_classes": dg.MetadataValue.json(out.excluded),
    }
    for name, b in g.baselines.items():
        meta[f"baseline_{name}"] = dg.MetadataValue.float(float(b["balanced_accuracy"]))
        meta[f"baseline_{name}_interval"] = dg.MetadataValue.json(b["interval"])
        meta[f"difference_lower_vs_{name}"] = dg.MetadataValue.float(float(b["difference_lower"]))
    return dg.AssetCheckResult(
        check_name=GATE_CHECK,
        passed=g.passed,
        severity=dg.AssetCheckSeverity.WARN if random_init else dg.AssetCheckSeverity.ERROR,
        metadata=meta,
    )


def calibration_check(out: "TrainOutcome") -> dg.AssetCheckResult:
    """Temperature scaling (fitted on val by NLL) must not raise the validation ECE; the scores are in the metadata."""
    cal = out.calibration
    assert cal is not None
    return dg.AssetCheckResult(
        check_name=CALIBRATION_CHECK,
        passed=not cal.val_ece_raised,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "temperature": dg.MetadataValue.float(float(cal.temperature)),
            "val_ece_before": dg.MetadataValue.float(float(cal.val["before"]["ece"])),
            "val_ece_after": dg.MetadataValue.float(float(cal.val["after"]["ece"])),
            "test_ece_before": dg.MetadataValue.float(float(cal.test["before"]["ece"])),
            "test_ece_after": dg.MetadataValue.float(float(cal.test["after"]["ece"])),
            "n_bins": cal.n_bins,
            "scores": dg.MetadataValue.md(cal.table_md()),
        },
    )


def skipped_check(reason: str, excluded: dict[str, dict[str, int]], check_name: str = GATE_CHECK) -> dg.AssetCheckResult:
    """A model that was not trained (too few classes) has not passed its gate: WARN, with the reason."""
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"skipped": True, "reason": reason, "excluded_classes": dg.MetadataValue.json(excluded)},
    )


def predictions_check(summary: dict[str, dict]) -> dg.AssetCheckResult:
    """Every version that passed its gate has predictions for all galaxies with input."""
    kept = {k: v for k, v in summary.items() if not v["left_out"]}
    missing = {k: v["unavailable"] for k, v in kept.items() if v["unavailable"]}
    return dg.AssetCheckResult(
        check_name="every_version_predicted",
        passed=all(v["written"] + v["already"] > 0 for v in kept.values()),
        metadata={"model_versions_predicted": len(kept),
                  "left_out_gate_failed": dg.MetadataValue.json(sorted(set(summary) - set(kept))),
                  "galaxies_without_input": dg.MetadataValue.json(missing or {})},
    )
