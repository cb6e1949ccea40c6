"""A small U-Net (Ronneberger, Fischer & Brox 2015) for per-pixel galaxy / bulge masks.

Encoder: ``depth`` stages of two 3x3 convolutions (batch norm, ReLU) with 2x2 max pooling between them,
widths doubling from ``base``; decoder: 2x2 transposed convolutions, concatenation with the encoder
stage of the same scale (the skip connections), two 3x3 convolutions; a 1x1 convolution gives the
logits of each class. At ``base=16, depth=3`` it has about 0.47 M parameters and trains on CPU at
64 x 64 stamps; the input side must be divisible by ``2 ** depth``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["UNet", "build_unet"]


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """``(N, in_chans, H, W)`` float -> ``(N, num_classes, H, W)`` logits.

    Parameters
    ----------
    in_chans : int
    num_classes : int
    base : int
        Width of the first stage.
    depth : int
        Number of poolings (H and W must be divisible by ``2 ** depth``).
    """

    def __init__(self, in_chans: int = 3, num_classes: int = 3, *, base: int = 16, depth: int = 3) -> None:
        super().__init__()
        if depth < 1 or base < 1:
            raise ValueError(f"U-Net needs depth >= 1 and base >= 1; got depth={depth}, base={base}")
        widths = [base * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.down = nn.ModuleList([_double_conv(in_chans, widths[0])]
                                  + [_double_conv(widths[i], widths[i + 1]) for i in range(depth)])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                 for i in reversed(range(depth))])
        self.merge = nn.ModuleList([_double_conv(2 * widths[i], widths[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        step = 2**self.depth
        if h % step or w % step:
            raise ValueError(f"U-Net input {h} x {w} is not divisible by 2**depth = {step}")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


def build_unet(num_classes: int = 3, *, in_chans: int = 3, base: int = 16, depth: int = 3) -> UNet:
    """The segmentation model of the ``unet`` asset."""
    return UNet(in_chans, num_classes, base=base, depth=depth)
