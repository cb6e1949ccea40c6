"""Uploaded query images: size-limited, type-checked, decoded by the folder source's own reader."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from starlette.exceptions import HTTPException

from features.errors import InputError
from features.sources.folder import image_stem
from features.sources.ranges import MAX_IMAGE_SIDE

__all__ = ["CHUNK", "read_upload"]

CHUNK = 1 << 16
"""Bytes read at a time, so an oversized upload is refused after at most the limit plus one chunk."""


def _check_picture_size(path: Path, name: str) -> None:
    """Refuse a picture larger than :data:`MAX_IMAGE_SIDE` from its header, before any pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise InputError(f"{name}: unreadable image file: {str(exc).replace(str(path), name)}") from None
    if max(width, height) > MAX_IMAGE_SIDE:
        raise InputError(f"{name}: {width} x {height} px; images may have at most {MAX_IMAGE_SIDE} px a side")


def read_upload(stream: BinaryIO, name: str, folder: Path, max_bytes: int) -> np.ndarray:
    """The pixels of an uploaded image file, as :func:`features.embeddings.load_image_file` reads them.

    Parameters
    ----------
    stream : binary file
        The upload.
    name : str
        Its file name; the suffix (``.png``, ``.jpg``, ``.jpeg``, ``.fits``) decides the reader.
    folder : Path
        A private temporary folder the bytes are written to.
    max_bytes : int
        Larger uploads are refused with HTTP 413.

    Raises
    ------
    starlette.exceptions.HTTPException
        413: the upload is larger than ``max_bytes``.
    InputError
        Unsupported type, empty, undecodable, or larger than :data:`MAX_IMAGE_SIDE` a side.
    """
    from features.embeddings import load_image_file

    hit = image_stem(name)
    if hit is None:
        raise InputError(f"{name}: not an image file name (expected .png, .jpg, .jpeg or .fits)")
    path = folder / f"upload{name[len(hit[0]):]}"
    size = 0
    with open(path, "wb") as out:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise HTTPException(413, f"{name}: upload exceeds the {max_bytes} byte limit")
            out.write(chunk)
    if size == 0:
        raise InputError(f"{name}: the upload is empty")
    if hit[1] != "fits":
        _check_picture_size(path, name)
    try:
        pixels = load_image_file(path)
    except InputError as exc:  # name the upload, not the temporary file
        raise InputError(str(exc).replace(str(path), name)) from None
    if max(pixels.shape[:2]) > MAX_IMAGE_SIDE:
        raise InputError(f"{name}: {pixels.shape[1]} x {pixels.shape[0]} px; images may have at most "
                         f"{MAX_IMAGE_SIDE} px a side")
    if pixels.shape[0] < 16 or pixels.shape[1] < 16:
        raise InputError(f"{name}: {pixels.shape[1]} x {pixels.shape[0]} px is too small to embed (16 px a side at least)")
    return pixels
