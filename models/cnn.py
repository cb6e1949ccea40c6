"""A compact 4-block convolutional network trained from scratch: the simple baseline.

Each block is a 3x3 convolution with batch normalisation and ReLU followed by 2x2 max pooling
(VGG-style; Simonyan & Zisserman 2015), widths doubling per block; global average pooling gives the
feature vector. About 0.39 M parameters at the default widths (32, 64, 128, 256); it works at any
stamp size >= 16 px.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from models.classifier import EncoderClassifier

__all__ = ["build_cnn", "cnn_encoder"]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


def cnn_encoder(in_chans: int = 3, widths: Sequence[int] = (32, 64, 128, 256)) -> nn.Sequential:
    """The four conv blocks plus global average pooling: ``(N, C, H, W)`` -> ``(N, widths[-1])``."""
    layers: list[nn.Module] = []
    c = in_chans
    for w in widths:
        layers.append(_block(c, w))
        c = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    enc = nn.Sequential(*layers)
    for m in enc.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return enc


def build_cnn(
    num_classes: int,
    *,
    in_chans: int = 3,
    widths: Sequence[int] = (32, 64, 128, 256),
    dropout: float = 0.3,
) -> EncoderClassifier:
    """The 4-block CNN classifier.

    Parameters
    ----------
    num_classes : int
    in_chans : int
    widths : sequence of 4 int
        Channels of each block.
    dropout : float
        Dropout before the linear head.
    """
    widths = tuple(int(w) for w in widths)
    return EncoderClassifier(cnn_encoder(in_chans, widths), widths[-1], num_classes, dropout=dropout)
