"""The registry of trainable models: name -> how to build it.

Each entry is the one place a model is registered: how to build it, which fitting step trains it,
which assets it reads and its presets. :mod:`dagster_project.defs.training.assets` makes one training
asset per entry (an asset factory), :func:`stages.training.train_model` trains any entry, so a new kind
is one new module with its fitting step plus one entry here (the recipe in ``docs/architecture.md``).
This module imports neither torch nor Dagster at import time, so the definitions can read it.

Three kinds of model exist: ``images`` models (torch, trained with :func:`models.fit.fit` on stamps read
from the warehouse), ``embeddings`` models (the linear probe on stored embeddings) and ``fusion`` (the
late-fusion MLP of :mod:`models.fusion` on stored embeddings, morphometrics and photometry). Tests iterate
over :data:`MODELS`, so a model added here is tested for forward shapes and a seeded two-step fit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from features.weights import WeightsOrigin, WeightsProvenance
from models.config import FinetuneConfig, FusionConfig, ImageConfig, ProbeConfig, RunConfig

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MODELS", "ModelSpec", "build_model", "get_spec"]

Builder = Callable[[int, Any, bool], tuple["nn.Module", WeightsProvenance]]
"""``builder(num_classes, config, pretrained)``: ``config`` is the model's own ``config_cls``."""


def _cnn(num_classes: int, cfg: ImageConfig, pretrained: bool) -> tuple[nn.Module, WeightsProvenance]:
    from models.cnn import build_cnn

    return build_cnn(num_classes), WeightsProvenance(WeightsOrigin.SCRATCH)


def _efficientnet(num_classes: int, cfg: ImageConfig, pretrained: bool) -> tuple[nn.Module, WeightsProvenance]:
    from models.efficientnet import build_efficientnet_b0

    model, bb = build_efficientnet_b0(num_classes, pretrained=pretrained and cfg.pretrained,
                                      weights_path=cfg.weights_path or None,
                                      allow_random_init=cfg.allow_random_init)
    return model, bb.provenance


def _dinov2_finetune(num_classes: int, cfg: FinetuneConfig, pretrained: bool) -> tuple[nn.Module, WeightsProvenance]:
    from models.dinov2 import build_dinov2_finetune

    model, bb = build_dinov2_finetune(num_classes, encoder=cfg.encoder, img_size=cfg.img_size,
                                      pretrained=pretrained and cfg.pretrained,
                                      weights_path=cfg.weights_path or None,
                                      allow_random_init=cfg.allow_random_init)
    return model, replace(bb.provenance, via=f"fine-tuned backbone {cfg.encoder}")


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes
    ----------
    name : str
        Registry name, also the Dagster asset name.
    kind : str
        ``"images"``, ``"embeddings"`` or ``"fusion"`` (each has its fitting step in
        :data:`stages.training.FIT_STEPS`), or any other name when ``fit_step`` is given.
    description : str
        Also the description of its Dagster asset.
    builder : callable or None
        ``builder(num_classes, config, pretrained) -> (module, WeightsProvenance)`` for ``images`` models.
        ``pretrained=False`` builds the architecture only (to load a trained checkpoint).
    deps : tuple of str
        The assets it reads (its asset's upstream dependencies).
    tool : str
        The Dagster ``kinds`` tag of its asset (``"pytorch"``, ``"sklearn"``).
    fit_step : str
        ``"module:function"`` of its fitting step (a :data:`stages.trainers.FitStep`), imported when it
        trains; empty: the step of its ``kind``. A string, so ``models`` never imports ``stages``.
    presets : mapping or None
        ``{"demo": {...}, "full": {...}}``: the ``config_cls`` values that differ from its defaults;
        ``None``: the entry of :data:`models.config.PRESETS`.
    config_cls : type
        Its own small frozen config (a :class:`models.config.RunConfig` subclass): what
        :func:`models.config.make_config` builds, the registry row stores as JSON and
        :func:`models.config.config_from_json` reads back.
    """

    name: str
    kind: str
    description: str
    builder: Builder | None = None
    deps: tuple[str, ...] = ("splits", "galaxies")
    tool: str = "pytorch"
    fit_step: str = ""
    presets: Mapping[str, Mapping[str, Any]] | None = None
    config_cls: type[RunConfig] = ImageConfig


MODELS: dict[str, ModelSpec] = {
    "cnn": ModelSpec("cnn", "images", "compact 4-block CNN trained from scratch", _cnn),
    "efficientnet_b0": ModelSpec("efficientnet_b0", "images", "timm EfficientNet-B0, ImageNet weights when found",
                                 _efficientnet),
    "dinov2_probe": ModelSpec("dinov2_probe", "embeddings",
                              "logistic regression on stored DINOv2 embeddings, C chosen on validation",
                              deps=("splits", "embeddings"), tool="sklearn", config_cls=ProbeConfig),
    "dinov2_finetune": ModelSpec("dinov2_finetune", "images",
                                 "fine-tune of the encoder in use (DINOv2 when its weights resolve, else the one "
                                 "auto chose: Zoobot's or the warehouse's own) + probe-initialised head, layer-wise "
                                 "lr decay", _dinov2_finetune,
                                 deps=("splits", "galaxies", "dinov2_probe"), config_cls=FinetuneConfig),
    "fusion": ModelSpec("fusion", "fusion",
                        "late fusion (models.fusion): one MLP per modality (frozen-encoder embeddings, "
                        "morphometrics, photometry), missing-modality mask, fusion head",
                        deps=("splits", "embeddings", "morphometrics", "photometry"), config_cls=FusionConfig),
}
"""Every trainable model, by name."""


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model (``ValueError`` listing the known names otherwise)."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


def build_model(name: str, num_classes: int, config: ImageConfig, *,
                pretrained: bool = True) -> tuple[nn.Module, WeightsProvenance]:
    """Build an ``images`` model; returns the module and the weights it was built with."""
    spec = get_spec(name)
    if spec.builder is None:
        raise ValueError(f"model {name!r} is not a torch image model")
    return spec.builder(num_classes, config, pretrained)
