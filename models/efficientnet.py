"""EfficientNet-B0 (Tan & Le 2019) from timm, ImageNet weights when they resolve.

The research code reached balanced accuracy 0.827 on Galaxy10 DECaLS with it at 224 px; its feature
vector (1280-D, global average pool) feeds a zero-initialised linear head.
"""

from __future__ import annotations

from models.backbones import Backbone, load_backbone
from models.classifier import EncoderClassifier

__all__ = ["EFFICIENTNET_B0_REPO", "build_efficientnet_b0"]

EFFICIENTNET_B0_REPO = "timm/efficientnet_b0.ra_in1k"
"""Hugging Face repository of timm's ImageNet-1k EfficientNet-B0 weights."""


def build_efficientnet_b0(
    num_classes: int,
    *,
    pretrained: bool = True,
    weights_path: str | None = None,
    allow_random_init: bool = False,
    dropout: float = 0.2,
    drop_path_rate: float = 0.1,
) -> tuple[EncoderClassifier, Backbone]:
    """EfficientNet-B0 encoder plus a linear head.

    Parameters
    ----------
    num_classes : int
    pretrained, weights_path, allow_random_init
        See :func:`models.backbones.load_backbone`.
    dropout : float
        Dropout before the head.
    drop_path_rate : float
        Stochastic depth in the encoder.

    Returns
    -------
    model : EncoderClassifier
    backbone : Backbone
        With the weights origin to record.
    """
    bb = load_backbone(
        "efficientnet_b0",
        EFFICIENTNET_B0_REPO,
        pretrained=pretrained,
        weights_path=weights_path,
        allow_random_init=allow_random_init,
        num_classes=0,
        drop_path_rate=drop_path_rate,
    )
    return EncoderClassifier(bb.model, bb.model.num_features, num_classes, dropout=dropout), bb
