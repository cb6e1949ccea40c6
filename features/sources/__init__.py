"""Image sources: Galaxy10 DECaLS HDF5, a folder of images with a catalogue, and the synthetic demo survey.

:func:`make_source` builds a source from the parameters stored in the warehouse's ``sources`` table, so a
Dagster partition (a shard) can be re-materialized from the UI with nothing but its key.
"""

from __future__ import annotations

import inspect
from typing import Any

from features.errors import InputError
from features.sources.base import (
    GalaxyBatch,
    Source,
    check_source_name,
    image_sha1,
    name_from_path,
    shard_key,
    shard_range,
)
from features.sources.classes import GALAXY10_CLASSES, GALAXY10_COUNTS

__all__ = [
    "GALAXY10_CLASSES",
    "GALAXY10_COUNTS",
    "SOURCE_KINDS",
    "GalaxyBatch",
    "Source",
    "check_source_name",
    "image_sha1",
    "make_source",
    "name_from_path",
    "shard_key",
    "shard_range",
]

SOURCE_KINDS = ("demo", "galaxy10", "folder")
"""The kinds of source (readers) ``astrovision ingest --source`` offers."""


def make_source(kind: str, path: str | None = None, catalog: str | None = None, *, name: str | None = None,
                **params: Any) -> Source:
    """Build a source of a kind, optionally under a name.

    Parameters
    ----------
    kind : {"demo", "galaxy10", "folder"}
    path : str, optional
        ``Galaxy10_DECals.h5`` for ``galaxy10``; the image directory for ``folder``.
    catalog : str, optional
        The CSV catalogue for ``folder`` (default: ``<path>/catalog.csv``).
    **params
        Source-specific keyword arguments (``n`` and ``seed`` for the demo; ``label_column`` for a
        folder), as stored in the ``sources`` table.
    name : str, optional
        The source's name (:func:`check_source_name`); default :meth:`Source.default_name`.
    """
    source = _build(kind, path, catalog, {k: v for k, v in params.items() if k not in ("path", "catalog")})
    source.name = name
    return source


def _build(kind: str, path: str | None, catalog: str | None, params: dict[str, Any]) -> Source:
    if kind == "demo":
        from features.sources.synthetic import SyntheticSurvey

        return SyntheticSurvey(**_accepted(SyntheticSurvey, params))
    if kind == "galaxy10":
        from features.sources.galaxy10 import Galaxy10Source

        if not path:
            raise InputError(
                "the galaxy10 source needs --path to Galaxy10_DECals.h5 "
                "(download it with `astrovision download-galaxy10 DEST`)"
            )
        return Galaxy10Source(path, **_accepted(Galaxy10Source, params))
    if kind == "folder":
        from features.sources.folder import FolderSource

        if not path:
            raise InputError("the folder source needs --path to a directory of images")
        return FolderSource(path, catalog=catalog, **_accepted(FolderSource, params))
    raise InputError(f"unknown source kind {kind!r}; choose one of {', '.join(SOURCE_KINDS)}")


def _accepted(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``params`` that ``cls``'s constructor takes (others, e.g. the demo's photometry
    catalogue path, belong to other stages)."""
    names = set(inspect.signature(cls).parameters)
    return {k: v for k, v in params.items() if k in names}
