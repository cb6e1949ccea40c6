"""Seeing masks: a mask's outline drawn on its stamp, and a montage of stamps with their masks.

The outline is the mask minus its binary erosion (3 x 3), so it is one pixel wide on the stamp's own
grid; the disk outline is drawn in ``colour`` and the bulge outline (label 2) in a second colour.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

__all__ = ["montage_png", "outline", "overlay_outline"]

GALAXY_COLOUR = (0, 255, 0)
BULGE_COLOUR = (255, 64, 255)


def outline(mask: np.ndarray) -> np.ndarray:
    """Boolean pixels on the border of ``mask`` (True inside, next to a False or the stamp edge)."""
    m = np.asarray(mask, dtype=bool)
    return m & ~ndi.binary_erosion(m, structure=np.ones((3, 3), dtype=bool), border_value=0)


def overlay_outline(image: np.ndarray, labels: np.ndarray, *, colour: tuple[int, int, int] = GALAXY_COLOUR,
                    bulge_colour: tuple[int, int, int] = BULGE_COLOUR) -> np.ndarray:
    """``image`` (uint8 ``(H, W[, 3])``) with the outline of ``labels > 0`` and of ``labels == 2`` drawn in.

    Raises
    ------
    ValueError
        The label image and the stamp differ in height or width.
    """
    rgb = np.asarray(image)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    lab = np.asarray(labels)
    if lab.shape != rgb.shape[:2]:
        raise ValueError(f"mask {lab.shape} does not match the image {rgb.shape[:2]}")
    out = np.array(rgb[:, :, :3], dtype=np.uint8, copy=True)
    out[outline(lab > 0)] = colour
    out[outline(lab == 2)] = bulge_colour
    return out


def montage_png(rows: Sequence[tuple[str, Sequence[np.ndarray]]], columns: Sequence[str], *, panel: int = 128) -> bytes:
    """A PNG grid: one row per ``(title, [panel images uint8 (H, W, 3)])``, ``columns`` titles on top."""
    from PIL import Image, ImageDraw

    head, left = 16, 110
    ncol = max((len(p) for _, p in rows), default=0)
    sheet = Image.new("RGB", (left + ncol * panel, head + len(rows) * panel), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    for j, name in enumerate(columns):
        draw.text((left + j * panel + 4, 2), name, fill=(255, 255, 255))
    for i, (title, panels) in enumerate(rows):
        draw.text((4, head + i * panel + panel // 2 - 6), title[:17], fill=(255, 255, 255))
        for j, im in enumerate(panels):
            tile = Image.fromarray(np.asarray(im, dtype=np.uint8)).resize((panel, panel), Image.Resampling.NEAREST)
            sheet.paste(tile, (left + j * panel, head + i * panel))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()
