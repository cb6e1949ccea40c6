"""Paired augmentation: every geometric change applied to an image is applied to its mask too.

The research code this replaces flipped and rotated the images but not their masks, so the network
learnt from misaligned labels. Here one draw per sample of a right-angle rotation, a horizontal flip
and a crop (scale and centre jitter) resized back to the input size is applied to both the image
(bilinear) and the mask (``nearest-exact``, so labels stay labels and pixel centres map the same way
as the image's); ``tests/test_segmentation.py`` checks that an image made of its own mask stays equal
to the augmented mask. Only galaxy-valid changes: no colour change, the galaxy stays near the centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

__all__ = ["PairedAugment"]


@dataclass(frozen=True)
class PairedAugment:
    """Random rot90, flip and crop-resize of ``(image, mask)`` pairs.

    Attributes
    ----------
    rotate, flip : bool
    min_crop : float
        Smallest crop side as a fraction of the input side (1.0: no crop).
    max_shift : float
        Largest crop-centre offset as a fraction of the side.
    image_mode : str
        Interpolation of the image when resizing the crop (the mask always uses ``nearest-exact``).
    """

    rotate: bool = True
    flip: bool = True
    min_crop: float = 0.8
    max_shift: float = 0.05
    image_mode: str = "bilinear"

    def _one(self, image: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self.rotate:
            k = int(torch.randint(4, (1,), generator=g))
            image, mask = torch.rot90(image, k, (-2, -1)), torch.rot90(mask, k, (-2, -1))
        if self.flip and bool(torch.rand(1, generator=g) < 0.5):
            image, mask = torch.flip(image, (-1,)), torch.flip(mask, (-1,))
        h, w = image.shape[-2:]
        if self.min_crop < 1.0:
            frac = self.min_crop + (1.0 - self.min_crop) * float(torch.rand(1, generator=g))
            ch, cw = max(2, round(h * frac)), max(2, round(w * frac))
            dy, dx = ((torch.rand(2, generator=g) * 2 - 1) * self.max_shift).tolist()
            y0 = min(max(0, round((h - ch) / 2 + dy * h)), h - ch)
            x0 = min(max(0, round((w - cw) / 2 + dx * w)), w - cw)
            image = image[..., y0:y0 + ch, x0:x0 + cw]
            mask = mask[..., y0:y0 + ch, x0:x0 + cw]
            if (ch, cw) != (h, w):
                kwargs = {"align_corners": False} if self.image_mode in ("bilinear", "bicubic") else {}
                image = F.interpolate(image[None], size=(h, w), mode=self.image_mode, **kwargs)[0]
                mask = F.interpolate(mask[None, None].float(), size=(h, w), mode="nearest-exact")[0, 0].to(mask.dtype)
        return image, mask

    def __call__(self, images: torch.Tensor, masks: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch: ``images (N, C, H, W)`` float, ``masks (N, H, W)`` integer labels.

        Returns new tensors of the same shapes and dtypes; the inputs are not modified.
        """
        if images.ndim != 4 or masks.ndim != 3 or images.shape[0] != masks.shape[0] \
                or images.shape[-2:] != masks.shape[-2:]:
            raise ValueError(f"paired augmentation needs images (N, C, H, W) and masks (N, H, W) of the same "
                             f"N, H, W; got {tuple(images.shape)} and {tuple(masks.shape)}")
        g = generator or torch.Generator().manual_seed(0)
        pairs = [self._one(images[i], masks[i], g) for i in range(images.shape[0])]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
