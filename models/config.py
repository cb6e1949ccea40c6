"""Training settings: one small frozen config per model kind, with a CPU ``demo`` and a GPU ``full`` preset.

:class:`RunConfig` holds what every run takes (label column, seeds, split set, gate, conformal level,
tracking); each kind adds its own fields: :class:`ImageConfig` (CNN, EfficientNet), :class:`FinetuneConfig`
(DINOv2 fine-tune), :class:`ProbeConfig` (the probe) and :class:`FusionConfig` (fusion). The registry
(:attr:`models.registry.ModelSpec.config_cls`) says which model takes which; :func:`make_config` builds
one from its preset, and :func:`config_from_json` reads one back from a registry row (rows written with
the old all-kinds ``TrainConfig`` keep loading: the fields the kind does not take are dropped).

The ``demo`` preset is the default everywhere (Dagster config, ``astrovision train``) and is sized so the
whole demo (~600 galaxies, 2 CPU cores) trains every model in a few minutes: small stamps, one to three
epochs, random initialisation allowed when pretrained weights cannot be found (and then recorded as
``"random init"``). The ``full`` preset is the documented setting for a GPU and the real Galaxy10 DECaLS
file; it never allows random initialisation.

============================  =====================================  =====================================
model                         demo (CPU)                             full (GPU)
============================  =====================================  =====================================
cnn                           64 px, 4 epochs on <= 2048 galaxies,   128 px, 60 epochs, batch 64, lr 1e-3
                              batch 32, lr 2e-3
efficientnet_b0               64 px, 2 epochs on <= 256 galaxies,    224 px, 30 epochs, batch 64, lr 5e-4
                              batch 32, lr 2e-3
dinov2_probe                  C on a 13-point grid                   same, ViT-B/14 embeddings
dinov2_finetune               56 px, 1 epoch on <= 256 galaxies,     224 px, 15 epochs, batch 32, lr 5e-5,
                              batch 32, lr 1e-4                      ViT-B/14, bf16 autocast
fusion                        <= 150 epochs (patience 20), batch     same, ViT-B/14 embeddings
                              128, lr 2e-3, hidden 64, ablations
============================  =====================================  =====================================

Training budgets (:data:`TRAIN_BUDGETS`): under the ``demo`` preset every stage that trains on images uses
at most a fixed number of galaxies (a seeded, class-stratified sample of the training split), so its cost
stops growing with the catalogue once the catalogue is large enough; below the cap nothing changes.
The ``ssl_encoder`` asset (:func:`stages.ssl.train_ssl_encoder`) and the ``unet`` asset take their caps
from the same table. What a run skipped is in its registry row (``n_train_used``, notes) or encoder record.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any, TypeVar

from models.errors import TrainingError
from models.splits import split_set_name

if TYPE_CHECKING:
    import torch

    from models.fit import FitConfig

__all__ = [
    "PRESETS",
    "TRAIN_BUDGETS",
    "FinetuneConfig",
    "FusionConfig",
    "ImageConfig",
    "ProbeConfig",
    "RunConfig",
    "config_from_json",
    "make_config",
    "resolve_device",
]

C = TypeVar("C", bound="RunConfig")


@dataclass(frozen=True)
class RunConfig:
    """What every training run takes besides the data (stored as JSON in the model registry).

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
    max_train : int
        Use at most this many training galaxies (0: all); a seeded, class-stratified subsample.
    gate_confidence, gate_resamples
        The gate (:func:`models.baselines.gate`): the model's test balanced accuracy must beat the
        majority-class and pixel baselines of the same run, each difference's ``1 - gate_confidence``
        quantile over ``gate_resamples`` paired bootstrap resamples of the test galaxies above zero.
    conformal_alpha : float
        Target miscoverage of the conformal sets (:mod:`models.conformal`; 0.1: sets hold the true class
        for at least 90% of galaxies, per class for the class-conditional sets).
    wandb_project : str
        Also log the run to this Weights & Biases project (:mod:`models.tracking`; empty: off, unless
        ``ASTROVISION_WANDB_PROJECT`` is set). The registry stays the record.
    """

    preset: str = "demo"
    label_column: str = "label"
    seed: int = 0
    split_seed: int = 0
    split_fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    max_train: int = 0
    gate_confidence: float = 0.95
    gate_resamples: int = 2000
    conformal_alpha: float = 0.1
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

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        """Read a config back; keys this class does not take (an old all-kinds ``TrainConfig`` row) are dropped."""
        known = {f.name for f in fields(cls)}
        data = json.loads(text)
        data.setdefault("split_seed", data.get("seed", 0))  # before split_seed, one seed set both
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class ImageConfig(RunConfig):
    """A torch image classifier (CNN, EfficientNet-B0) trained on stamps.

    Attributes
    ----------
    img_size, batch_size, epochs, lr, weight_decay, patience, label_smoothing, class_balanced, augment,
    amp, max_steps
        Training on :mod:`models.loop` (see :class:`models.fit.FitConfig`).
    num_workers : int
        Data-loader workers; -1 chooses (:func:`models.data.auto_num_workers`).
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    pretrained, allow_random_init, weights_path
        Backbone weights (see :func:`models.backbones.load_backbone`).
    """

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
    pretrained: bool = True
    allow_random_init: bool = False
    weights_path: str = ""

    def fit_config(self) -> FitConfig:
        """The :class:`models.fit.FitConfig` part."""
        from models.fit import FitConfig

        return FitConfig(epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay, patience=self.patience,
                         label_smoothing=self.label_smoothing, class_balanced=self.class_balanced,
                         augment=self.augment, amp=self.amp, max_steps=self.max_steps)


@dataclass(frozen=True)
class FinetuneConfig(ImageConfig):
    """The fine-tune of the encoder in use: an image classifier with an encoder and layer-wise learning rates.

    Attributes
    ----------
    encoder : str
        The encoder fine-tuned (a key of :data:`features.embeddings.ENCODERS`, or an ``hf_hub:`` /
        ``timm:`` name; ``"auto"``: the encoder in use, the first of :func:`stages.training.auto_order`
        whose embeddings table exists: Zoobot's, DINOv2, the warehouse's own ``ssl_resnet18``, the
        random baseline). A CNN encoder is fine-tuned at its own input size (``ssl_resnet18`` 64 px,
        Zoobot 224 px; :func:`stages.trainers.finetune_inputs`); ``img_size`` applies to the ViTs.
    layer_decay, head_lr_scale, init_from_probe
        Layer-wise learning-rate decay, head learning-rate multiplier, and whether the head starts from the
        latest probe of the same encoder and label column.
    """

    encoder: str = "auto"
    layer_decay: float = 0.75
    head_lr_scale: float = 10.0
    init_from_probe: bool = True

    def fit_config(self) -> FitConfig:
        """As :meth:`ImageConfig.fit_config`, without batch-norm recalibration: the encoder keeps the
        statistics its embeddings and probe were computed with (:meth:`models.dinov2.DINOv2Features.train`);
        a head initialised from the probe is scored before training and kept when no epoch beats it on
        validation (``best_epoch`` 0 in the history), so the fine-tune never ends below its start there."""
        return replace(super().fit_config(), bn_recalibration_batches=0, score_start=self.init_from_probe)


@dataclass(frozen=True)
class ProbeConfig(RunConfig):
    """The linear probe on stored embeddings.

    Attributes
    ----------
    encoder : str
        The probe reads ``embeddings_<encoder>``; ``"auto"`` takes the first embeddings table that exists
        among ``dinov2_vits14``, ``dinov2_vitb14``, ``ssl_resnet18``, ``random_vits14``.
    """

    encoder: str = "auto"


@dataclass(frozen=True)
class FusionConfig(RunConfig):
    """Late fusion (:mod:`models.fusion`) of stored embeddings, morphometrics and photometry.

    Attributes
    ----------
    encoder : str
        Frozen encoder whose ``embeddings_<encoder>`` are fused (``"auto"`` as for the probe).
    epochs, patience, batch_size, lr, weight_decay
        Training on :mod:`models.loop`.
    hidden, dropout, modality_dropout, ablate
        Branch width, dropout rate, the chance a present modality is dropped per galaxy in training, and
        whether every modality subset is also fitted (ablations).
    """

    encoder: str = "auto"
    epochs: int = 150
    patience: int = 20
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-2
    hidden: int = 64
    dropout: float = 0.2
    modality_dropout: float = 0.1
    ablate: bool = True


TRAIN_BUDGETS: dict[str, int] = {"ssl_encoder": 2048, "cnn": 2048, "unet": 2048, "efficientnet_b0": 256,
                                  "dinov2_finetune": 256}
"""Per training stage, the most galaxies it trains on under the default (``demo``) preset: SimCLR's
images (so images seen <= cap x epochs), the classifiers' and the U-Net's training galaxies (``max_train``).
The demo (600 galaxies, ~420 in train) stays under the 2048 caps; Galaxy10 (17,736, ~12,400 in train) does not.
:mod:`stages.plan` projects the training stages with these caps."""

_IMAGE_DEMO: dict[str, Any] = {"allow_random_init": True, "patience": 5}
_IMAGE_FULL: dict[str, Any] = {"allow_random_init": False, "label_smoothing": 0.1, "patience": 8}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "cnn": {
        "demo": {**_IMAGE_DEMO, "img_size": 64, "epochs": 4, "batch_size": 32, "lr": 2e-3,
                 "max_train": TRAIN_BUDGETS["cnn"]},
        "full": {**_IMAGE_FULL, "img_size": 128, "epochs": 60, "batch_size": 64, "lr": 1e-3},
    },
    "efficientnet_b0": {
        "demo": {**_IMAGE_DEMO, "img_size": 64, "epochs": 2, "batch_size": 32, "lr": 2e-3,
                 "max_train": TRAIN_BUDGETS["efficientnet_b0"]},
        "full": {**_IMAGE_FULL, "img_size": 224, "epochs": 30, "batch_size": 64, "lr": 5e-4},
    },
    "dinov2_probe": {
        "demo": {},
        "full": {"encoder": "dinov2_vitb14"},
    },
    "dinov2_finetune": {
        "demo": {**_IMAGE_DEMO, "img_size": 56, "epochs": 1, "batch_size": 32, "lr": 1e-4,
                 "max_train": TRAIN_BUDGETS["dinov2_finetune"],
                 "layer_decay": 0.75, "head_lr_scale": 10.0},
        "full": {**_IMAGE_FULL, "encoder": "dinov2_vitb14", "img_size": 224, "epochs": 15, "batch_size": 32,
                 "lr": 5e-5, "layer_decay": 0.75, "head_lr_scale": 10.0},
    },
    "fusion": {
        "demo": {},
        "full": {"encoder": "dinov2_vitb14"},
    },
}
"""Per model and preset, the values that differ from its config class's defaults (a model registered with
its own ``presets`` in :data:`models.registry.MODELS` takes those instead)."""


def make_config(model: str, preset: str = "demo", **overrides: Any) -> RunConfig:
    """The config of ``model`` (its registry ``config_cls``) under ``preset``, with ``overrides``.

    ``None`` values in ``overrides`` are ignored.

    Raises
    ------
    ValueError
        Unknown model, preset or field (a field the model's config class does not take).
    """
    from models.registry import MODELS

    spec = MODELS.get(model)
    if spec is None:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
    presets = PRESETS.get(model, {}) if spec.presets is None else spec.presets
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(presets) or 'none'}")
    known = {f.name for f in fields(spec.config_cls)}
    bad = [k for k in overrides if k not in known]
    if bad:
        raise ValueError(f"unknown config field(s) {bad} for {model} ({spec.config_cls.__name__})")
    cfg = replace(spec.config_cls(preset=preset), **presets[preset])
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def config_from_json(model: str, text: str) -> RunConfig:
    """The config stored in a registry row of ``model`` (old all-kinds rows included)."""
    from models.registry import get_spec

    return get_spec(model).config_cls.from_json(text)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
