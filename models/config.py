"""Training settings: one frozen config per run, with a CPU ``demo`` preset and a GPU ``full`` preset.

The ``demo`` preset is the default everywhere (Dagster config, ``astrovision train``) and is sized so the
whole demo (~600 galaxies, 2 CPU cores) trains every model in a few minutes: small stamps, one to three
epochs, random initialisation allowed when pretrained weights cannot be found (and then recorded as
``"random init"``). The ``full`` preset is the documented setting for a GPU and the real Galaxy10 DECaLS
file; it never allows random initialisation.

============================  =====================================  =====================================
model                         demo (CPU)                             full (GPU)
============================  =====================================  =====================================
cnn                           64 px, 4 epochs, batch 32, lr 2e-3     128 px, 60 epochs, batch 64, lr 1e-3
efficientnet_b0               64 px, 2 epochs on <= 256 galaxies,    224 px, 30 epochs, batch 64, lr 5e-4
                              batch 32, lr 2e-3
dinov2_probe                  C on a 13-point grid                   same, ViT-B/14 embeddings
dinov2_finetune               56 px, 1 epoch on <= 256 galaxies,     224 px, 15 epochs, batch 32, lr 5e-5,
                              batch 32, lr 1e-4                      ViT-B/14, bf16 autocast
fusion                        <= 150 epochs (patience 20), batch     same, ViT-B/14 embeddings
                              128, lr 2e-3, hidden 64, ablations
============================  =====================================  =====================================
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from models.errors import TrainingError
from models.fit import FitConfig
from models.splits import split_set_name

__all__ = ["PRESETS", "TrainConfig", "make_config", "resolve_device"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the data (stored as JSON in the model registry).

    Attributes
    ----------
    preset : {"demo", "full"}
        The preset the other values started from.
    label_column : str
        Target: ``"label"`` or an ``extra_json`` key such as ``"ring"``.
    seed : int
        Seed of training only: initialisation, shuffling, augmentation, the ``max_train`` subsample and the
        bootstraps. The split is set by ``split_seed``, so a seed sweep varies training alone.
    split_seed, split_fractions
        The split set the run trains on: :func:`models.splits.split_set_name` of ``label_column``,
        ``split_seed`` and ``split_fractions`` (train, val, test), e.g. ``"label-s0-f70.15.15"``.
    img_size, batch_size, epochs, lr, weight_decay, patience, label_smoothing, class_balanced, augment,
    amp, max_steps
        Image-model training (see :class:`models.fit.FitConfig`).
    num_workers : int
        Data-loader workers; -1 chooses (:func:`models.data.auto_num_workers`).
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    max_train : int
        Use at most this many training galaxies (0: all); a seeded, class-stratified subsample.
    pretrained, allow_random_init, weights_path
        Backbone weights (see :func:`models.backbones.load_backbone`).
    encoder : str
        DINOv2 encoder (a key of :data:`features.embeddings.ENCODERS`); the probe reads
        ``embeddings_<encoder>``. ``"auto"`` takes the first embeddings table that exists among
        ``dinov2_vits14``, ``dinov2_vitb14``, ``random_vits14`` (what the embeddings stage wrote), and
        ``dinov2_vits14`` when none does.
    layer_decay, head_lr_scale, init_from_probe
        DINOv2 fine-tune: layer-wise learning-rate decay, head learning-rate multiplier, and whether the
        head starts from the latest probe of the same encoder and label column.
    hidden, dropout, modality_dropout, ablate
        Fusion (:mod:`models.fusion`): branch width, dropout rate, the chance a present modality is
        dropped per galaxy in training, and whether every modality subset is also fitted (ablations).
    wandb_project : str
        Also log the run to this Weights & Biases project (:mod:`models.tracking`; empty: off, unless
        ``ASTROVISION_WANDB_PROJECT`` is set). The registry stays the record.
    conformal_alpha : float
        Target miscoverage of the conformal sets (:mod:`models.conformal`; 0.1: sets hold the true class
        for at least 90% of galaxies, per class for the class-conditional sets).
    gate_confidence, gate_resamples
        The gate (:func:`models.baselines.gate`): the model's test balanced accuracy must beat the
        majority-class and pixel baselines of the same run, each difference's ``1 - gate_confidence``
        quantile over ``gate_resamples`` paired bootstrap resamples of the test galaxies above zero.
    """

    preset: str = "demo"
    label_column: str = "label"
    seed: int = 0
    split_seed: int = 0
    split_fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    img_size: int = 64
    batch_size: int = 32
    epochs: int = 3
    lr: float = 1e-3
    weight_decay: float = 0.05
    patience: int = 5
    label_smoothing: float = 0.0
    class_balanced: bool = True
    augment: bool = True
    amp: bool = True
    max_steps: int = 0
    num_workers: int = -1
    device: str = "auto"
    max_train: int = 0
    pretrained: bool = True
    allow_random_init: bool = False
    weights_path: str = ""
    encoder: str = "auto"
    layer_decay: float = 0.75
    head_lr_scale: float = 10.0
    init_from_probe: bool = True
    gate_confidence: float = 0.95
    gate_resamples: int = 2000
    conformal_alpha: float = 0.1
    hidden: int = 64
    dropout: float = 0.2
    modality_dropout: float = 0.1
    ablate: bool = True
    wandb_project: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "split_fractions", tuple(float(x) for x in self.split_fractions))
        if len(self.split_fractions) != 3 or any(x <= 0 for x in self.split_fractions) or abs(
                sum(self.split_fractions) - 1.0) > 1e-6:
            raise TrainingError(f"split_fractions must be three positive numbers (train, val, test) summing to 1; "
                                f"got {self.split_fractions}")
        if not 0.0 < self.gate_confidence < 1.0:
            raise TrainingError(f"gate_confidence must lie strictly between 0 and 1; got {self.gate_confidence}")
        if not 0.0 < self.conformal_alpha < 1.0:
            raise TrainingError(f"conformal_alpha must lie strictly between 0 and 1; got {self.conformal_alpha}")
        if self.gate_resamples < 1:
            raise TrainingError(f"gate_resamples must be at least 1; got {self.gate_resamples}")

    @property
    def split_name(self) -> str:
        """The split set this run trains on (:func:`models.splits.split_set_name`)."""
        return split_set_name(self.label_column, self.split_seed, self.split_fractions)

    def fit_config(self) -> FitConfig:
        """The :class:`models.fit.FitConfig` part."""
        return FitConfig(epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay, patience=self.patience,
                         label_smoothing=self.label_smoothing, class_balanced=self.class_balanced,
                         augment=self.augment, amp=self.amp, max_steps=self.max_steps)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        data = json.loads(text)
        data.setdefault("split_seed", data.get("seed", 0))  # before split_seed, one seed set both
        return cls(**{k: v for k, v in data.items() if k in known})


_COMMON_DEMO: dict[str, Any] = {"allow_random_init": True, "patience": 5}
_COMMON_FULL: dict[str, Any] = {"allow_random_init": False, "label_smoothing": 0.1, "patience": 8}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "cnn": {
        "demo": {**_COMMON_DEMO, "img_size": 64, "epochs": 4, "batch_size": 32, "lr": 2e-3},
        "full": {**_COMMON_FULL, "img_size": 128, "epochs": 60, "batch_size": 64, "lr": 1e-3},
    },
    "efficientnet_b0": {
        "demo": {**_COMMON_DEMO, "img_size": 64, "epochs": 2, "batch_size": 32, "lr": 2e-3, "max_train": 256},
        "full": {**_COMMON_FULL, "img_size": 224, "epochs": 30, "batch_size": 64, "lr": 5e-4},
    },
    "dinov2_probe": {
        "demo": {**_COMMON_DEMO},
        "full": {**_COMMON_FULL, "encoder": "dinov2_vitb14"},
    },
    "dinov2_finetune": {
        "demo": {**_COMMON_DEMO, "img_size": 56, "epochs": 1, "batch_size": 32, "lr": 1e-4, "max_train": 256,
                 "layer_decay": 0.75,
                 "head_lr_scale": 10.0},
        "full": {**_COMMON_FULL, "encoder": "dinov2_vitb14", "img_size": 224, "epochs": 15, "batch_size": 32,
                 "lr": 5e-5, "layer_decay": 0.75, "head_lr_scale": 10.0},
    },
    "fusion": {
        "demo": {**_COMMON_DEMO, "epochs": 150, "patience": 20, "batch_size": 128, "lr": 2e-3, "weight_decay": 1e-2},
        "full": {**_COMMON_FULL, "encoder": "dinov2_vitb14", "epochs": 150, "patience": 20, "batch_size": 128,
                 "lr": 2e-3, "weight_decay": 1e-2, "label_smoothing": 0.0},
    },
}
"""Per model and preset, the values that differ from :class:`TrainConfig`'s defaults."""


def make_config(model: str, preset: str = "demo", **overrides: Any) -> TrainConfig:
    """The config of ``model`` under ``preset``, with ``overrides`` (``None`` values are ignored).

    Raises
    ------
    ValueError
        Unknown model, preset or field.
    """
    if model not in PRESETS:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(PRESETS)}")
    if preset not in PRESETS[model]:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS[model])}")
    known = {f.name for f in fields(TrainConfig)}
    bad = [k for k in overrides if k not in known]
    if bad:
        raise ValueError(f"unknown config field(s) {bad}")
    cfg = replace(TrainConfig(preset=preset), **PRESETS[model][preset])
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
