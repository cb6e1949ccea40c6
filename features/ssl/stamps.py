"""Galaxy-centred stamps: cut each frame on its galaxy and scale it to the galaxy's size.

Survey frames are not made for one galaxy: in Galaxy Zoo 1's SDSS frames (423 x 423) the galaxy
covers a few percent of the pixels, so a 64 px resize of the whole frame leaves it ~10 px wide, and a
network sees mostly sky. Zoobot (Walmsley et al. 2023) and Stein et al. (2021) feed cut-outs centred
on the galaxy and scaled by its Petrosian radius. Without a catalogue radius the same is done here
from the pixels, as SExtractor-style detection does (Bertin & Arnouts 1996):

1. luminance ``L`` = mean of the three ``[0, 1]`` channels of :func:`features.pixels.model_input`,
   smoothed by a Gaussian of ``SMOOTH_SIGMA`` px;
2. sky level and noise from the median and the MAD (times 1.4826) of ``L``; the galaxy covers a small
   fraction of a frame, so both are the sky's;
3. the segment: the connected pixels above ``sky + max(DETECT_SIGMA * noise, MIN_CONTRAST)``; the
   one containing the frame's centre, else the largest within ``CENTRE_RADIUS`` of the side;
4. its flux-weighted centroid is the stamp's centre, and the stamp's half side is
   ``EXTENT * sqrt(area / pi)`` (the radius of a disc of the segment's area, a stand-in for the
   Petrosian radius), clipped to ``[MIN_HALF, side / 2]`` px;
5. the square is cut (zeros outside the frame: the sky floor of a stretched image) and resized with an
   antialiased bicubic filter to ``size``.

A frame with no segment (blank, or nothing near its centre) is kept whole (``found`` False). The
same function makes the training stamps (:func:`models.ssl.to_stamps`) and the embedding input of an
encoder whose spec asks for it, so the encoder sees the same thing in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["STAMP_KINDS", "StampGeometry", "galaxy_stamps", "stamp_geometry"]

STAMP_KINDS = ("frame", "galaxy")
"""What an encoder sees: the whole frame resized, or the galaxy-centred stamp of this module."""

SMOOTH_SIGMA = 1.5
DETECT_SIGMA = 3.0
MIN_CONTRAST = 0.02
CENTRE_RADIUS = 0.25
EXTENT = 1.0
"""Half side of the stamp in segment radii. 1.0 since 2026-12-07: pretrained and evaluated on the real GZ1
SDSS frames and GZ DECaLS rings (``benchmarks/bench_ssl.py real --extent``), SimCLR at 64 px on stamps of
1.0 radii reached GZ1 lookalike precision@10 0.646 and probe balanced accuracy 0.810, against 0.587 and
0.755 at 1.6, and both now beat every baseline; ring precision@10 fell from 0.596 to 0.569
(``docs/benchmarks_ssl.md``)."""
MIN_HALF = 8.0
DETECT_SIDE = 128


@dataclass(frozen=True)
class StampGeometry:
    """Where a galaxy-centred stamp is cut (pixels of the input frame).

    Attributes
    ----------
    cy, cx : float
        Centre (row, column).
    half : float
        Half side of the square.
    found : bool
        Whether a segment was found (False: the whole frame).
    """

    cy: float
    cx: float
    half: float
    found: bool


def stamp_geometry(rgb: np.ndarray, extent: float = EXTENT) -> StampGeometry:
    """The stamp of one ``float32 (H, W, 3)`` ``[0, 1]`` frame (module docstring, steps 1-4); its half
    side is ``extent`` times the segment's equivalent radius (default :data:`EXTENT`).

    A frame without a segment near its centre (all sky, blank, or non-finite) gives the whole frame.
    """
    from scipy import ndimage

    full_h, full_w = rgb.shape[:2]
    whole = StampGeometry((full_h - 1) / 2, (full_w - 1) / 2, max(full_h, full_w) / 2, False)
    lum = np.nan_to_num(np.asarray(rgb, np.float32).mean(axis=2))
    f = max(1, -(-max(full_h, full_w) // DETECT_SIDE))  # block factor of the detection grid
    if f > 1:
        hh, ww = full_h // f * f, full_w // f * f
        lum = lum[:hh, :ww].reshape(hh // f, f, ww // f, f).mean(axis=(1, 3))
    h, w = lum.shape
    lum = ndimage.gaussian_filter(lum, SMOOTH_SIGMA)
    sky = float(np.median(lum))
    noise = 1.4826 * float(np.median(np.abs(lum - sky)))
    mask = lum > sky + max(DETECT_SIGMA * noise, MIN_CONTRAST)
    labels, n = ndimage.label(mask)
    if n == 0:
        return whole
    label = int(labels[h // 2, w // 2])
    if label == 0:
        yy, xx = np.nonzero(labels)
        near = np.hypot(yy - h / 2, xx - w / 2) < CENTRE_RADIUS * max(h, w)
        if not near.any():
            return whole
        counts = np.bincount(labels[yy[near], xx[near]])
        label = int(counts.argmax())
    seg = labels == label
    weight = np.where(seg, lum - sky, 0.0)
    total = float(weight.sum())
    if not total > 0:
        return whole
    yy, xx = np.indices((h, w))
    cy, cx = float((weight * yy).sum() / total), float((weight * xx).sum() / total)
    half = float(np.clip(extent * f * np.sqrt(seg.sum() / np.pi), MIN_HALF, max(full_h, full_w) / 2))
    return StampGeometry(f * cy + (f - 1) / 2, f * cx + (f - 1) / 2, half, True)


def _cut(rgb: np.ndarray, g: StampGeometry, size: int):
    import torch
    import torch.nn.functional as F

    h, w = rgb.shape[:2]
    side = max(2, round(2 * g.half))
    y0, x0 = round(g.cy - side / 2 + 0.5), round(g.cx - side / 2 + 0.5)
    out = np.zeros((side, side, 3), np.float32)
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(h, y0 + side), min(w, x0 + side)
    if ye > ys and xe > xs:
        out[ys - y0:ye - y0, xs - x0:xe - x0] = rgb[ys:ye, xs:xe]
    x = torch.from_numpy(out).permute(2, 0, 1)[None]
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return x[0].clamp_(0.0, 1.0)


def galaxy_stamps(images: Sequence[np.ndarray] | np.ndarray, size: int,
                  extent: float = EXTENT, *, threads: int = 1) -> tuple[np.ndarray, list[StampGeometry]]:
    """Galaxy-centred ``uint8 [N, size, size, 3]`` stamps of stored images, and where each was cut.

    Parameters
    ----------
    images : sequence of arrays
        Stored images (anything :func:`features.pixels.model_input` takes).
    size : int
        Output side in pixels.
    extent : float, optional
        Half side of the stamp in segment radii (default :data:`EXTENT`).
    threads : int, optional
        Images cut at once on threads (scipy's labelling and torch's resize release the GIL: 1.7-1.9x on
        2 threads for 600 demo images); the stamps are the same.

    Returns
    -------
    stamps : numpy.ndarray
        ``uint8 [N, size, size, 3]`` (``round(255 * x)`` of the ``[0, 1]`` stamp).
    geometry : list of StampGeometry

    Raises
    ------
    features.errors.InputError
        An image of unusable shape or dtype (from :func:`features.pixels.model_input`).
    """
    from features.pixels import model_input

    out = np.empty((len(images), size, size, 3), np.uint8)

    def one(i: int) -> StampGeometry:
        rgb = model_input(images[i], what=f"image {i}")
        g = stamp_geometry(rgb, extent)
        out[i] = (_cut(rgb, g, size).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
        return g

    from features.parallel import thread_map

    return out, thread_map(one, range(len(images)), workers=threads)
