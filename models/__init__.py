"""Classifiers trained from the warehouse: splits, models, one training loop, probe, metrics, registry.

Plain and importable without Dagster or the warehouse package: functions that need the warehouse take
a :class:`warehouse.Warehouse` as an argument.

* :mod:`models.splits` - stratified, duplicate-group-aware train/val/test splits
* :mod:`models.labels` - any label column (``label`` or an ``extra_json`` key) as class indices
* :mod:`models.data` - a torch dataset reading images by ``galaxy_id``, galaxy-valid augmentations
* :mod:`models.registry` - the trainable models by name (``cnn``, ``efficientnet_b0``, ``dinov2_probe``,
  ``dinov2_finetune``)
* :mod:`models.fit` - the one training loop; :mod:`models.probe` - the linear probe
* :mod:`models.config` - ``demo`` (CPU) and ``full`` (GPU) presets
* :mod:`models.pipeline` - splits and training runs over a warehouse; :mod:`models.versions` - the
  model registry table; :mod:`models.predict` - predictions of every registered version
"""

from models.config import PRESETS, TrainConfig, make_config
from models.errors import LabelError, MissingInputError, SplitError, TrainingError, WeightsUnavailableError
from models.fit import FitConfig, FitResult, fit
from models.labels import Labels, resolve_labels
from models.metrics import classification_metrics, confusion_png
from models.pipeline import SplitsOutcome, TrainOutcome, build_splits, load_split, train_model
from models.predict import load_predictor, predict_all
from models.probe import LinearProbe, cross_validate_probe, fit_probe
from models.registry import MODELS, ModelSpec, build_model
from models.splits import SplitAssignment, check_no_leak, make_splits
from models.versions import get_model, list_models, training_set

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
    "SplitAssignment",
    "SplitError",
    "SplitsOutcome",
    "TrainConfig",
    "TrainOutcome",
    "TrainingError",
    "WeightsUnavailableError",
    "build_model",
    "build_splits",
    "check_no_leak",
    "classification_metrics",
    "confusion_png",
    "cross_validate_probe",
    "fit",
    "fit_probe",
    "get_model",
    "list_models",
    "load_predictor",
    "load_split",
    "make_config",
    "make_splits",
    "predict_all",
    "resolve_labels",
    "train_model",
    "training_set",
]
