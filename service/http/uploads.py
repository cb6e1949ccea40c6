"""Uploaded query images: size-limited, type-checked, bounded before decoding, decoded by the folder source's reader.

What an upload may cost is decided before its pixels are decoded:

* its bytes are counted while they are read (413 past the limit);
* a PNG or JPEG is opened only as PNG or JPEG, and its size read from its header (PIL reads headers
  lazily): over :data:`MAX_IMAGE_SIDE` a side, or a declared size so large that PIL calls it a
  decompression bomb, is a 400;
* a gzipped FITS is decompressed by a bounded stream, stopped at ``max_image_bytes``; then every HDU's
  header is read and the data they declare (``NAXISn``, or ``ZNAXISn`` of a tile-compressed image,
  times ``BITPIX``) must fit ``max_image_bytes`` before astropy reads any data.

After decoding, an image whose pixels are all NaN/inf, or all one value, is refused (its "lookalikes"
would be those of a blank image). FITS cubes are read as ``(C, H, W)`` (the folder source's order) or,
when the last numpy axis is 1-4 long and the others are not, as channels last ``(H, W, C)``.
"""

from __future__ import annotations

import gzip
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
from starlette.exceptions import HTTPException

from features.errors import InputError
from features.sources.folder import image_stem
from features.sources.ranges import MAX_IMAGE_SIDE

__all__ = ["CHUNK", "MAX_IMAGE_BYTES", "check_pixels", "read_upload"]

CHUNK = 1 << 16
"""Bytes read at a time, so an oversized upload is refused after at most the limit plus one chunk."""
MAX_IMAGE_BYTES = 64 * 1024 * 1024
"""Default bound on what an upload may expand to (decompressed FITS, declared FITS data)."""
_GZIP_MAGIC = b"\x1f\x8b"
_FITS_MAGIC = b"SIMPLE  "
_CHANNELS = 4
"""Longest axis that may be a colour/band axis of a cube."""


def _png_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG's ``IHDR`` chunk, or None if ``path`` is not a PNG."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _check_picture_size(path: Path, name: str) -> None:
    """Refuse a picture larger than :data:`MAX_IMAGE_SIDE` from its header, before any pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below from the header
            with Image.open(path, formats=["PNG", "JPEG"]) as im:
                width, height = im.size
    except Image.DecompressionBombError:  # PIL refuses the declared size itself (over 2 x MAX_IMAGE_PIXELS)
        declared = _png_size(path)
        said = f"{declared[0]} x {declared[1]} px" if declared else "more pixels than PIL decodes safely"
        raise InputError(f"{name}: its header declares {said}; images may have at most {MAX_IMAGE_SIDE} px "
                         "a side") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise InputError(f"{name}: unreadable image file (PNG or JPEG expected): {str(exc).replace(str(path), name)}") from None
    if max(width, height) > MAX_IMAGE_SIDE:
        raise InputError(f"{name}: {width} x {height} px; images may have at most {MAX_IMAGE_SIDE} px a side")


def _gunzip_bounded(path: Path, out: Path, name: str, max_bytes: int) -> None:
    """Decompress the gzip file ``path`` to ``out``, refusing it as soon as it expands past ``max_bytes``."""
    size = 0
    try:
        with gzip.open(path, "rb") as src, open(out, "wb") as dst:
            while chunk := src.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise InputError(f"{name}: decompresses to more than {max_bytes} bytes "
                                     "(the server's bound on an uploaded image)")
                dst.write(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{name}: unreadable gzip data: {exc}") from None


def _fits_declared(path: Path, name: str, max_bytes: int) -> tuple[int, ...] | None:
    """Check the data every HDU of a FITS file declares against ``max_bytes``; the numpy shape of its first image.

    Only headers are read (astropy loads HDUs lazily; ``.data`` is never touched here).
    """
    from astropy.io import fits

    with open(path, "rb") as fh:
        if fh.read(len(_FITS_MAGIC)) != _FITS_MAGIC:
            raise InputError(f"{name}: not a FITS file (or compressed other than with gzip)")
    total, first = 0, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "file may have been truncated": the declared size is judged below
            hdul = fits.open(path, memmap=False, lazy_load_hdus=True)
            hdus = list(hdul)  # every header (lazily loaded: no data is read)
        with hdul:
            for hdu in hdus:
                header = hdu.header
                key = "ZNAXIS" if "ZNAXIS" in header else "NAXIS"
                naxes = int(header.get(key, 0))
                axes = tuple(int(header.get(f"{key}{i}", 0)) for i in range(1, naxes + 1))
                bitpix = abs(int(header.get("ZBITPIX" if key == "ZNAXIS" else "BITPIX", 8)))
                if any(a < 0 for a in axes):
                    raise InputError(f"{name}: a FITS header declares a negative axis length {axes}")
                count = int(np.prod(axes, dtype=object)) if axes else 0
                total += count * max(bitpix // 8, 1)
                if total > max_bytes:
                    raise InputError(f"{name}: its FITS headers declare more than {max_bytes} bytes of data "
                                     "(the server's bound on an uploaded image)")
                if first is None and len(axes) >= 2 and count > 0:
                    first = tuple(reversed(axes))
    except InputError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, VerifyError, KeyError on bad headers
        raise InputError(f"{name}: unreadable FITS header: {str(exc).replace(str(path), name)}") from None
    return first


def _channels_last(declared: tuple[int, ...] | None) -> bool:
    """Whether a cube's numpy shape ``(a, b, c)`` is ``(H, W, C)``: ``c`` a band axis and ``a`` not."""
    return (declared is not None and len(declared) == 3 and declared[2] <= _CHANNELS < declared[0]
            and declared[1] > _CHANNELS)


def check_pixels(pixels: np.ndarray, name: str) -> np.ndarray:
    """``pixels`` if they hold an image worth searching, else ``InputError`` saying what is wrong.

    Refused: more than :data:`MAX_IMAGE_SIDE` or fewer than 16 px a side; no finite value (all NaN or
    infinite); one value everywhere (constant, blank).
    """
    if max(pixels.shape[:2]) > MAX_IMAGE_SIDE:
        raise InputError(f"{name}: {pixels.shape[1]} x {pixels.shape[0]} px; images may have at most "
                         f"{MAX_IMAGE_SIDE} px a side")
    if pixels.shape[0] < 16 or pixels.shape[1] < 16:
        raise InputError(f"{name}: {pixels.shape[1]} x {pixels.shape[0]} px is too small to embed (16 px a side "
                         "at least; FITS cubes are read as (C, H, W) or (H, W, C) with C <= 4)")
    finite = np.isfinite(pixels)
    if not finite.any():
        raise InputError(f"{name}: every pixel is NaN or infinite; there is no image to search with")
    values = pixels[finite]
    if values.min() == values.max():
        raise InputError(f"{name}: every pixel has the value {values.flat[0]:g}; a blank image has no lookalikes")
    return pixels


def read_upload(stream: BinaryIO, name: str, folder: Path, max_bytes: int,
                max_image_bytes: int = MAX_IMAGE_BYTES) -> np.ndarray:
    """The pixels of an uploaded image file, as :func:`features.embeddings.load_image_file` reads them.

    Parameters
    ----------
    stream : binary file
        The upload.
    name : str
        Its file name; the suffix (``.png``, ``.jpg``, ``.jpeg``, ``.fits``, ``.fits.gz``, ...) decides the reader.
    folder : Path
        A private temporary folder the bytes are written to.
    max_bytes : int
        Larger uploads are refused with HTTP 413.
    max_image_bytes : int
        Most bytes a FITS upload may expand to or declare (400 above), checked before decompressing.

    Raises
    ------
    starlette.exceptions.HTTPException
        413: the upload is larger than ``max_bytes``.
    InputError
        Unsupported type, empty, undecodable, too large (sides, declared data, decompressed bytes),
        too small, or degenerate (see :func:`check_pixels`).
    """
    from features.embeddings import load_image_file

    hit = image_stem(name)
    if hit is None:
        raise InputError(f"{name}: not an image file name (expected .png, .jpg, .jpeg or .fits)")
    raw = folder / f"raw{name[len(hit[0]):]}"
    size = 0
    with open(raw, "wb") as out:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise HTTPException(413, f"{name}: upload exceeds the {max_bytes} byte limit")
            out.write(chunk)
    if size == 0:
        raise InputError(f"{name}: the upload is empty")
    declared = None
    if hit[1] == "fits":
        path = folder / "upload.fits"
        with open(raw, "rb") as fh:
            gzipped = fh.read(2) == _GZIP_MAGIC
        if gzipped:
            _gunzip_bounded(raw, path, name, max_image_bytes)
        else:
            raw.rename(path)
        declared = _fits_declared(path, name, max_image_bytes)
    else:
        path = raw
        _check_picture_size(path, name)
    try:
        pixels = load_image_file(path)
    except InputError as exc:  # name the upload, not the temporary file
        raise InputError(str(exc).replace(str(path), name)) from None
    if _channels_last(declared):
        pixels = np.ascontiguousarray(np.moveaxis(pixels, -1, 0))  # the reader took axis 0 for the bands
    return check_pixels(pixels, name)
