"""The registry of trainable models: name -> how to build it.

Three kinds of model exist: ``images`` models (torch, trained with :func:`models.fit.fit` on stamps read
from the warehouse), ``embeddings`` models (the linear probe on stored embeddings) and ``fusion`` (the
late-fusion MLP of :mod:`models.fusion` on stored embeddings, morphometrics and photometry). Tests iterate
over :data:`MODELS`, so a model added here is tested for forward shapes and a seeded two-step fit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import nn

from features.weights import WeightsOrigin, WeightsProvenance
from models.config import TrainConfig

__all__ = ["MODELS", "ModelSpec", "build_model", "get_spec"]

Builder = Callable[[int, TrainConfig, bool], tuple[nn.Module, WeightsProvenance]]


def _cnn(num_classes: int, cfg: TrainConfig, pretrained: bool) -> tuple[nn.Module, WeightsProvenance]:
    from models.cnn import build_cnn

    return build_cnn(num_classes), WeightsProvenance(WeightsOrigin.SCRATCH)


def _efficientnet(num_classes: int, cfg: TrainConfig, pretrained: bool) -> tuple[nn.Module, WeightsProvenance]:
    from models.efficientnet import build_efficientnet_b0

    model, bb = build_efficientnet_b0(num_classes, pretrained=pretrained and cfg.pretrained,
                                      weights_path=cfg.weights_path or None,
                                      allow_random_init=cfg.allow_random_init)
    return model, bb.provenance


def _dinov2_finetune(num_classes: int, cfg: TrainConfig, pretrained: bool) -> tuple[nn.Module, WeightsProvenance]:
    from models.dinov2 import build_dinov2_finetune

    model, bb = build_dinov2_finetune(num_classes, encoder=cfg.encoder, img_size=cfg.img_size,
                                      pretrained=pretrained and cfg.pretrained,
                                      weights_path=cfg.weights_path or None,
                                      allow_random_init=cfg.allow_random_init)
    return model, bb.provenance


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes
    ----------
    name : str
        Registry name, also the Dagster asset name.
    kind : {"images", "embeddings", "fusion"}
    description : str
    builder : callable or None
        ``builder(num_classes, config, pretrained) -> (module, WeightsProvenance)`` for ``images`` models.
        ``pretrained=False`` builds the architecture only (to load a trained checkpoint).
    """

    name: str
    kind: Literal["images", "embeddings", "fusion"]
    description: str
    builder: Builder | None = None


MODELS: dict[str, ModelSpec] = {
    "cnn": ModelSpec("cnn", "images", "compact 4-block CNN trained from scratch", _cnn),
    "efficientnet_b0": ModelSpec("efficientnet_b0", "images", "timm EfficientNet-B0, ImageNet weights when found",
                                 _efficientnet),
    "dinov2_probe": ModelSpec("dinov2_probe", "embeddings",
                              "logistic regression on stored DINOv2 embeddings, C chosen on validation"),
    "dinov2_finetune": ModelSpec("dinov2_finetune", "images",
                                 "DINOv2 encoder + probe-initialised head, layer-wise lr decay", _dinov2_finetune),
    "fusion": ModelSpec("fusion", "fusion",
                        "late fusion (models.fusion): one MLP per modality (frozen-encoder embeddings, "
                        "morphometrics, photometry), missing-modality mask, fusion head"),
}
"""Every trainable model, by name."""


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model (``ValueError`` listing the known names otherwise)."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


def build_model(name: str, num_classes: int, config: TrainConfig, *,
                pretrained: bool = True) -> tuple[nn.Module, WeightsProvenance]:
    """Build an ``images`` model; returns the module and the weights it was built with."""
    spec = get_spec(name)
    if spec.builder is None:
        raise ValueError(f"model {name!r} is not a torch image model")
    return spec.builder(num_classes, config, pretrained)
