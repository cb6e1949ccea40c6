"""Encoder + head, the shape every image classifier here takes (timm / zoobot style).

``forward_features`` maps images to a feature vector, ``forward_head`` maps features to logits, so the
same encoder can feed a probe, a fused model or a calibrated head. The head's weights start at zero:
the first logits are all equal and the first loss is exactly ``ln K`` (the research fine-tune started
from mis-scaled logits, epoch-1 loss 11.4 for K = 10 where ln 10 = 2.30).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EncoderClassifier", "zero_linear"]


def zero_linear(in_features: int, out_features: int) -> nn.Linear:
    """A linear layer with zero weight and bias (uniform initial prediction, loss ``ln K``)."""
    layer = nn.Linear(in_features, out_features)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class EncoderClassifier(nn.Module):
    """An encoder giving ``(N, D)`` features and a dropout + linear head giving ``(N, K)`` logits.

    Parameters
    ----------
    encoder : torch.nn.Module
        Maps ``(N, 3, H, W)`` images to ``(N, num_features)`` (e.g. ``timm.create_model(name,
        num_classes=0)``).
    num_features : int
    num_classes : int
    dropout : float
        Dropout before the head.
    """

    def __init__(self, encoder: nn.Module, num_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.num_features = int(num_features)
        self.num_classes = int(num_classes)
        self.drop = nn.Dropout(dropout)
        self.head = zero_linear(self.num_features, self.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> ``(N, num_features)``."""
        return self.encoder(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Features -> ``(N, num_classes)`` logits."""
        return self.head(self.drop(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
