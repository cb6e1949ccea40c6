"""Classifiers trained from the warehouse: splits, models, one training loop, probe, metrics, registry.

Plain and importable without Dagster or the warehouse package: functions that need the warehouse take
a :class:`warehouse.Warehouse` as an argument.

* :mod:`models.splits` - stratified, duplicate-group-aware train/val/test splits
* :mod:`models.labels` - any label column (``label`` or an ``extra_json`` key) as class indices
* :mod:`models.data` - a torch dataset reading images by ``galaxy_id``, galaxy-valid augmentations
* :mod:`models.registry` - the trainable models by name (``cnn``, ``efficientnet_b0``, ``dinov2_probe``,
  ``dinov2_finetune``)
* :mod:`models.loop` - the one training loop; :mod:`models.fit` - the classifiers on it;
  :mod:`models.probe` - the linear probe
* :mod:`models.config` - ``demo`` (CPU) and ``full`` (GPU) presets
(the model registry table, :mod:`stages.versions`, predictions of every registered version,
:mod:`stages.predict`, split sets and training runs over a warehouse are glue in :mod:`stages`)

The public names below are imported lazily (PEP 562 module ``__getattr__``): ``import models`` or
``import models.splits`` does not import torch or scikit-learn; ``from models import fit`` imports
:mod:`models.fit` (and torch) on first use. This keeps processes that only load the Dagster
definitions (``astrovision ingest``, ``dagster dev``) small.
"""

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the eager imports, for type checkers and IDEs only
    from models.config import PRESETS, RunConfig, make_config
    from models.errors import (
        LabelError,
        MissingInputError,
        SplitError,
        TrainingError,
        WeightsUnavailableError,
    )
    from models.fit import FitConfig, FitResult, fit
    from models.labels import Labels, resolve_labels
    from models.metrics import classification_metrics, confusion_png
    from models.probe import LinearProbe, cross_validate_probe, fit_probe
    from models.registry import MODELS, ModelSpec, build_model
    from models.splits import SplitAssignment, check_no_leak, make_splits

_SOURCES: dict[str, tuple[str, ...]] = {
    "models.config": ("PRESETS", "RunConfig", "make_config"),
    "models.errors": ("LabelError", "MissingInputError", "SplitError", "TrainingError", "WeightsUnavailableError"),
    "models.fit": ("FitConfig", "FitResult", "fit"),
    "models.labels": ("Labels", "resolve_labels"),
    "models.metrics": ("classification_metrics", "confusion_png"),
    "models.probe": ("LinearProbe", "cross_validate_probe", "fit_probe"),
    "models.registry": ("MODELS", "ModelSpec", "build_model"),
    "models.splits": ("SplitAssignment", "check_no_leak", "make_splits"),
}
_WHERE = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = [
    "MODELS",
    "PRESETS",
    "FitConfig",
    "FitResult",
    "LabelError",
    "Labels",
    "LinearProbe",
    "MissingInputError",
    "ModelSpec",
    "RunConfig",
    "SplitAssignment",
    "SplitError",
    "TrainingError",
    "WeightsUnavailableError",
    "build_model",
    "check_no_leak",
    "classification_metrics",
    "confusion_png",
    "cross_validate_probe",
    "fit",
    "fit_probe",
    "make_config",
    "make_splits",
    "resolve_labels",
]


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first access and cache the value here."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _LazyPackage(types.ModuleType):
    """Keeps a public name from being shadowed by the submodule of the same name (``fit``).

    Importing ``models.fit`` (``models.config`` does) makes the import system bind the submodule as
    the package attribute ``fit``; with eager imports the function re-bound it afterwards. Here the
    binding is skipped, so ``from models import fit`` is the function, as before.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if (name in _WHERE and isinstance(value, types.ModuleType)
                and value.__name__ == f"{__name__}.{name}"):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _LazyPackage
