"""Lossless image encoding for the ``images`` table.

uint8 images (RGB composites, masks) are stored as PNG: lossless, roughly half the bytes of the raw array
for DECaLS-like stamps, and decodable by any tool. Every other dtype (FITS flux images, float masks) is
stored as ``.npy`` bytes, which keeps dtype and shape exactly. ``docs/benchmarks.md`` has the measured
size and speed of both.
"""

from __future__ import annotations

import io

import numpy as np

__all__ = ["PNG_LEVEL", "decode_image", "encode_image"]

PNG_LEVEL = 1
"""zlib level for PNG. Level 1 is ~4x faster to write than 6 and only a few % larger on noisy stamps."""


def encode_image(image: np.ndarray, *, png_level: int = PNG_LEVEL) -> tuple[str, bytes]:
    """Encode an image losslessly.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` array. uint8 with 1, 3 or 4 channels becomes PNG; anything else NPY.
    png_level : int
        zlib compression level for PNG (0-9).

    Returns
    -------
    encoding : {"png", "npy"}
    data : bytes
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be 2-D or 3-D (H, W[, C]); got shape {image.shape}")
    if image.dtype == np.uint8 and (image.ndim == 2 or image.shape[2] in (1, 3, 4)):
        arr = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
        buf = io.BytesIO()
        from PIL import Image  # imported on use: a command that reads no pixels skips it

        Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=png_level)
        return "png", buf.getvalue()
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(image), allow_pickle=False)
    return "npy", buf.getvalue()


def decode_image(encoding: str, data: bytes, *, channels: int | None = None) -> np.ndarray:
    """Decode bytes written by :func:`encode_image`.

    Parameters
    ----------
    encoding : {"png", "npy"}
    data : bytes
    channels : int, optional
        The stored channel count; a single-channel PNG comes back as ``(H, W, 1)`` when it is 1.
    """
    if encoding == "png":
        from PIL import Image

        arr = np.asarray(Image.open(io.BytesIO(data)))
        if channels == 1 and arr.ndim == 2:
            arr = arr[:, :, None]
        return arr
    if encoding == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    raise ValueError(f"unknown image encoding {encoding!r}")
