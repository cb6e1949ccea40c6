"""What every image source yields: batches of galaxy records.

A source knows how many galaxies it holds and yields them in :class:`GalaxyBatch` batches over any row
range, so a Dagster partition (a shard of ``shard_size`` rows) reads only its own rows. Sources never
load a whole survey into memory.

A source has a KIND (``demo``, ``galaxy10``, ``folder``: which reader) and a NAME, unique in a warehouse:
the prefix of its galaxy ids (``<name>:<native id>``) and shard keys (``<name>-00003``). Two folders or
two HDF5 files are two sources with two names. A name is a slug: lower-case letters, digits, ``_`` and
``.`` (:func:`check_source_name`); by default the kind (``demo``, ``galaxy10``) or, for a folder, a slug
of its directory name (:func:`name_from_path`).
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MAX_NAME_LENGTH",
    "GalaxyBatch",
    "Source",
    "check_source_name",
    "image_flags",
    "image_sha1",
    "name_from_path",
    "shard_key",
    "shard_range",
]

MAX_NAME_LENGTH = 64
"""Longest source name (characters)."""

_NAME_RE = re.compile(rf"[a-z0-9][a-z0-9_.]{{0,{MAX_NAME_LENGTH - 1}}}")


def check_source_name(name: str) -> str:
    """Return ``name`` if it is a valid source name, else raise :class:`features.errors.InputError`.

    A name starts with a lower-case letter or digit and holds only lower-case letters, digits, ``_`` and
    ``.``, at most :data:`MAX_NAME_LENGTH` characters: it is safe in a galaxy id, a Dagster partition
    key, a file name and a SQL literal, and never contains the ``:`` and ``-`` that separate ids and
    shard numbers.
    """
    from features.errors import InputError

    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InputError(
            f"invalid source name {name!r}: use lower-case letters, digits, '_' and '.', starting with a "
            f"letter or digit, at most {MAX_NAME_LENGTH} characters (e.g. 'gz_decals_rings')"
        )
    return name


def name_from_path(path: str | Path, fallback: str) -> str:
    """A source name made from a path's last component: lower-cased, other characters as ``_``.

    ``/data/GZ-DECaLS rings/`` gives ``gz_decals_rings``; a component with no letter or digit gives
    ``fallback``.
    """
    stem = Path(path).expanduser().resolve().name.lower()
    slug = re.sub(r"[^a-z0-9_.]+", "_", stem).strip("_.")[:MAX_NAME_LENGTH].rstrip("_.")
    return slug if _NAME_RE.fullmatch(slug) else fallback


def shard_key(source: str, index: int) -> str:
    """The Dagster partition key of a shard: ``<source name>-<index:05d>`` (e.g. ``demo-00003``)."""
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
        Source name (:attr:`Source.name`, e.g. ``galaxy10``, ``demo``, ``gz_decals_rings``).
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
    """A collection of galaxy images with a catalogue.

    Attributes
    ----------
    kind : str
        Which reader (``demo``, ``galaxy10``, ``folder``), as ``astrovision ingest --source`` picks it.
    name : str
        The source's name in the warehouse (see the module docstring); :meth:`default_name` unless set.
    """

    kind: str
    default_shard_size: int = 1000
    _name: str | None = None

    @property
    def name(self) -> str:
        """The source's name: the prefix of its galaxy ids and shard keys."""
        return self._name if self._name is not None else self.default_name()

    @name.setter
    def name(self, value: str | None) -> None:
        self._name = None if value is None else check_source_name(value)

    def default_name(self) -> str:
        """The name used when none is given: the kind (a folder uses its directory name)."""
        return self.kind

    def fingerprint(self) -> str:
        """A cheap checksum of the source's data, to tell a re-ingest from different data under one name.

        The default hashes :meth:`describe`; sources with files hash (part of) their content instead.
        """
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()

    @abstractmethod
    def __len__(self) -> int:
        """Number of galaxies."""

    @abstractmethod
    def iter_batches(self, start: int = 0, stop: int | None = None, batch_size: int = 64) -> Iterator[GalaxyBatch]:
        """Yield the galaxies of rows ``[start, stop)`` in batches of at most ``batch_size``."""

    def iter_runs(self, runs: Sequence[tuple[int, int]], batch_size: int = 64) -> Iterator[GalaxyBatch]:
        """Yield the galaxies of several ``[start, stop)`` row ranges, in order (a sky shard's rows)."""
        for start, stop in runs:
            yield from self.iter_batches(start, stop, batch_size)

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ra, dec)`` of every row in degrees (float64), for sky partitions.

        The default reads every batch (images included); readers with a catalogue override it.
        """
        ra: list[np.ndarray] = []
        dec: list[np.ndarray] = []
        for batch in self.iter_batches(0, len(self)):
            ra.append(np.asarray(batch.ra, dtype=np.float64))
            dec.append(np.asarray(batch.dec, dtype=np.float64))
        empty = np.zeros(0, dtype=np.float64)
        return (np.concatenate(ra) if ra else empty), (np.concatenate(dec) if dec else empty)

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
