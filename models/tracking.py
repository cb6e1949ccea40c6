"""Optional experiment tracking with Weights & Biases, for those who use it; the registry stays the record.

Off unless a project is named: ``RunConfig.wandb_project`` (the assets' ``wandb_project`` run config) or
the environment variable ``ASTROVISION_WANDB_PROJECT``. Then every training run (each classifier's
``fit``, the fusion model and its ablation, the temperature scaling and the conformal sets) is also logged
to one W&B run named ``<model>-v<version>``: the config, the per-epoch curves, the test and validation
metrics, calibration before/after, conformal coverage per class, the ablation table. ``wandb`` is imported
only then (the optional extra ``pip install astrovision[wandb]``); a project named without ``wandb``
installed stops the run before training, with one line saying how to install it - never a silent skip.
W&B's own settings apply: ``WANDB_MODE=offline`` writes the run under ``WANDB_DIR`` (default: the
warehouse root's ``wandb/``) and never touches the network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from models.errors import TrainingError

__all__ = ["ENV_PROJECT", "log_training_run", "require_wandb", "wandb_project"]

ENV_PROJECT = "ASTROVISION_WANDB_PROJECT"
"""Environment variable naming the W&B project when the config does not."""


def wandb_project(configured: str | None) -> str:
    """The W&B project to log to: the config's, else ``$ASTROVISION_WANDB_PROJECT``, else ``""`` (off)."""
    return (configured or os.environ.get(ENV_PROJECT, "")).strip()


def require_wandb(project: str) -> None:
    """Raise :class:`models.errors.TrainingError` when ``project`` is set and ``wandb`` cannot be imported."""
    if not project:
        return
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise TrainingError(
            f"W&B logging is configured (project {project!r}) but the wandb package is not installed; "
            f"pip install 'astrovision[wandb]' (or wandb), or unset wandb_project / {ENV_PROJECT}") from None


def _flat(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, bool):
        out[prefix] = float(value)
    elif isinstance(value, int | float):
        out[prefix] = float(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}/{k}" if prefix else str(k), v, out)


def log_training_run(project: str, *, name: str, version: int, config: dict[str, Any], metrics: dict[str, Any],
                     root: str | Path) -> str:
    """Log one registered training run to W&B; returns the run's local directory.

    Parameters
    ----------
    project : str
    name, version : str, int
        The registry's model name and version (the W&B run is ``<name>-v<version>``).
    config : dict
        The run's config (a :class:`models.config.RunConfig`) as a dict.
    metrics : dict
        The registry's ``metrics_json`` content: ``test``, ``val``, ``fit`` (``history``: the curves;
        ``ablation`` for fusion), ``calibration``, ``conformal``, ``gate``.
    root : path
        Default parent of W&B's ``wandb/`` folder when ``WANDB_DIR`` is not set.
    """
    import wandb

    directory = os.environ.get("WANDB_DIR") or str(Path(root) / "wandb")
    Path(directory).mkdir(parents=True, exist_ok=True)
    with wandb.init(project=project, name=f"{name}-v{version}", config=config, dir=directory,
                    job_type="train", tags=[name], reinit="create_new") as run:
        scores = metrics.get("fit", {}).get("val_scores", {})  # the probe: validation curve over its C grid
        for i, c in enumerate(sorted(scores, key=float)):
            run.log({"curve/C": float(c), "curve/val_balanced_accuracy": scores[c]}, step=i + 1)
        for row in metrics.get("fit", {}).get("history", []):
            step = int(row.get("epoch", 0))
            run.log({f"curve/{k}": v for k, v in row.items() if k != "epoch" and isinstance(v, int | float)},
                    step=step)
        summary: dict[str, float] = {}
        for key in ("test", "val", "calibration", "gate"):
            if key in metrics:
                _flat(key, {k: v for k, v in metrics[key].items() if k != "confusion"}, summary)
        for score, rep in metrics.get("conformal", {}).get("scores", {}).items():
            for kind in ("marginal", "class_conditional"):
                if rep.get(kind):
                    _flat(f"conformal/{score}/{kind}", rep[kind], summary)
        run.summary.update(summary)
        ablation = metrics.get("fit", {}).get("ablation")
        if ablation:
            cols = ["modalities", "balanced_accuracy", "ci_low", "ci_high", "difference_vs_best_single",
                    "difference_ci_low", "difference_ci_high", "gain"]
            rows = [[r["modalities"], r["balanced_accuracy"], *r["ci95"], r.get("difference_vs_best_single"),
                     *(r.get("difference_ci95") or [None, None]), r.get("gain")] for r in ablation["rows"]]
            run.log({"ablation": wandb.Table(columns=cols, data=rows)})
        return str(run.dir)
