"""What every image source yields: batches of galaxy records.

A source knows how many galaxies it holds and yields them in :class:`GalaxyBatch` batches over any row
range, so a Dagster partition (a shard of ``shard_size`` rows) reads only its own rows. Sources never
load a whole survey into memory.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["GalaxyBatch", "Source", "image_flags", "image_sha1", "shard_key", "shard_range"]


def shard_key(source: str, index: int) -> str:
    """The Dagster partition key of a shard: ``<source>-<index:05d>`` (e.g. ``demo-00003``)."""
    return f"{source}-{index:05d}"


def shard_range(shard: str, shard_size: int, n_total: int) -> tuple[int, int]:
    """The ``[start, stop)`` rows a shard key covers."""
    try:
        index = int(shard.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        raise ValueError(f"not a shard key: {shard!r} (expected <source>-<number>)") from None
    start = index * shard_size
    return start, min(start + shard_size, n_total)


def image_sha1(image: np.ndarray) -> str:
    """SHA-1 of an image's bytes plus shape and dtype; identical images share it."""
    h = hashlib.sha1()
    h.update(f"{image.shape}|{image.dtype}|".encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def image_flags(image: np.ndarray) -> int:
    """Image-stage :class:`features.flags.Flag` bits of one stamp.

    ``IMAGE_NAN`` when a float image has non-finite pixels; ``IMAGE_BLANK`` when the (finite) pixels are
    all equal or there are none.
    """
    from features.flags import Flag

    arr = np.asarray(image)
    flags = 0
    if arr.size == 0:
        return int(Flag.IMAGE_BLANK)
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            flags |= Flag.IMAGE_NAN
            arr = arr[finite]
    if arr.size == 0 or arr.min() == arr.max():
        flags |= Flag.IMAGE_BLANK
    return int(flags)


@dataclass
class GalaxyBatch:
    """A batch of galaxies from one source, column by column.

    Attributes
    ----------
    source : str
        Source name (``galaxy10``, ``folder``, ``demo``).
    native_ids : list of str
        The source's own id of each galaxy; ``galaxy_id`` is ``<source>:<native id>``.
    row_index : numpy.ndarray of int64
        Row position in the source (what shards are cut by).
    ra, dec, redshift, pxscale : numpy.ndarray of float64
        Degrees, degrees, unitless (NaN if unknown), arcsec per pixel.
    labels : numpy.ndarray of int64
        Class label, -1 where none.
    label_names : list of str or None
    extra : list of dict
        Further catalogue columns per galaxy (e.g. ``{"ring": 1}``), stored as JSON.
    images : list of numpy.ndarray
        ``(H, W, C)`` arrays.
    image_kind : str
        ``rgb_composite`` (8-bit stretched colour, e.g. DECaLS cutouts), ``flux`` (calibrated FITS).
    bands : str
        Comma-separated band of each channel, e.g. ``"z,r,g"`` for R,G,B of a DECaLS composite.
    stretch : dict or None
        How a composite was made from fluxes, when known (the demo survey), so it can be inverted.
    """

    source: str
    native_ids: list[str]
    row_index: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    redshift: np.ndarray
    pxscale: np.ndarray
    labels: np.ndarray
    label_names: list[str | None]
    images: list[np.ndarray]
    image_kind: str
    bands: str
    extra: list[dict[str, Any]] = field(default_factory=list)
    stretch: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.native_ids)

    @property
    def galaxy_ids(self) -> list[str]:
        """``<source>:<native id>`` for each galaxy."""
        return [f"{self.source}:{n}" for n in self.native_ids]

    def extra_json(self) -> list[str | None]:
        """The extra columns of each galaxy as a JSON string (None when there are none)."""
        if not self.extra:
            return [None] * len(self)
        return [json.dumps(e, sort_keys=True) if e else None for e in self.extra]


class Source(ABC):
    """A collection of galaxy images with a catalogue."""

    name: str
    default_shard_size: int = 1000

    @abstractmethod
    def __len__(self) -> int:
        """Number of galaxies."""

    @abstractmethod
    def iter_batches(self, start: int = 0, stop: int | None = None, batch_size: int = 64) -> Iterator[GalaxyBatch]:
        """Yield the galaxies of rows ``[start, stop)`` in batches of at most ``batch_size``."""

    def describe(self) -> dict[str, Any]:
        """Parameters that recreate this source (stored in the ``sources`` table)."""
        return {}

    def validate(self) -> None:  # noqa: B027 - optional hook
        """Check the whole input cheaply (keys, shapes, catalogue) before anything is written."""

    @staticmethod
    def check_ids_unique(ids: Sequence[str], where: str) -> None:
        """Raise :class:`features.errors.InputError` naming the first duplicated id and its rows."""
        from features.errors import InputError

        seen: dict[str, int] = {}
        for row, gid in enumerate(ids):
            if gid in seen:
                raise InputError(f"{where}: duplicate id {gid!r} in rows {seen[gid]} and {row}")
            seen[gid] = row
