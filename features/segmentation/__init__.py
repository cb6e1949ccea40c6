"""Galaxy masks: Otsu pseudo-labels, mask metrics and mask-derived shape features (no storage, no Dagster).

``otsu.py`` makes the three-level pseudo-label (background / disk / bulge) of one stamp, ``metrics.py``
scores a mask against another (IoU, Dice), ``shape.py`` measures a mask (area, centroid, ellipticity,
bulge fraction). The U-Net trained on the pseudo-labels lives in :mod:`models.unet`.
"""

from features.segmentation.metrics import dice, iou
from features.segmentation.otsu import (
    BACKGROUND,
    BULGE,
    CLASS_NAMES,
    DISK,
    PSEUDO_LABEL_METHOD,
    OtsuOptions,
    PseudoLabel,
    keep_central,
    otsu_pseudo_label,
    pseudo_label_image,
)
from features.segmentation.overlay import montage_png, overlay_outline
from features.segmentation.shape import MaskShape, mask_shape

__all__ = [
    "BACKGROUND",
    "BULGE",
    "CLASS_NAMES",
    "DISK",
    "PSEUDO_LABEL_METHOD",
    "MaskShape",
    "OtsuOptions",
    "PseudoLabel",
    "dice",
    "iou",
    "keep_central",
    "mask_shape",
    "montage_png",
    "otsu_pseudo_label",
    "overlay_outline",
    "pseudo_label_image",
]
