"""Typed stage results: one dataclass per stage owns the metadata keys the Dagster UI and the CLI show.

A stage (ingest a shard, measure morphometrics, embed, cross-match photometry, ...) returns a frozen
dataclass deriving from :class:`StageResult`. Its asset turns it into materialization metadata with
:meth:`StageResult.to_metadata` (through :func:`dagster_project.metadata.materialize`), and the CLI reads
the run's metadata back with :meth:`StageResult.from_metadata`, so renaming a key is a change of ONE
class, caught by the type checker and the tests, never a ``KeyError`` at run time in another module.

Values are plain Python (``str``, ``int``, ``float``, ``bool``, ``None``, ``list``, ``dict``,
:class:`pathlib.Path`), which Dagster maps to its metadata types itself; text meant as markdown (a table,
an inline figure) is a :class:`Markdown`. A NaN becomes ``None`` (Dagster shows "null", the CLI "n/a").
"""

from __future__ import annotations

import base64
import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

__all__ = ["INTERNAL", "Markdown", "Skipped", "StageResult", "markdown_png"]

R = TypeVar("R", bound="StageResult")


class Markdown(str):
    """Metadata text that the Dagster UI renders as markdown (tables, inline figures)."""

    __slots__ = ()


def markdown_png(path: Path, alt: str) -> Markdown:
    """A PNG file inlined as a markdown image (base64 data URI), so the UI shows it with the run."""
    return Markdown(f"![{alt}](data:image/png;base64,{base64.b64encode(Path(path).read_bytes()).decode()})")


INTERNAL: Mapping[str, bool] = MappingProxyType({"internal": True})
"""Field metadata of a result field for the asset's checks only: not shown as metadata, not read back
(``field(default=0, metadata=INTERNAL)``; it needs a default)."""


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


@dataclasses.dataclass(frozen=True)
class StageResult:
    """Base of every stage result: field name = metadata key, field value = metadata value."""

    def to_metadata(self) -> dict[str, Any]:
        """The metadata entries, one per field (not :data:`INTERNAL` ones), in field order (NaN as ``None``)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                if not f.metadata.get("internal")}

    @classmethod
    def from_metadata(cls: type[R], meta: Mapping[str, Any]) -> R:
        """The result back from a materialization's metadata (values as Dagster's ``.value`` gives them).

        Keys the class does not know are ignored; a field without a default that the metadata lacks is a
        ``KeyError`` naming the class and the key (a stage and its reader out of step: a bug, not input).
        """
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.metadata.get("internal"):
                continue
            if f.name in meta:
                values[f.name] = meta[f.name]
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise KeyError(f"{cls.__name__}: metadata has no {f.name!r} (keys: {sorted(meta)})")
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class Skipped(StageResult):
    """An asset that ran and did nothing on purpose (too few classes, weights already in place), and why."""

    reason: str
    skipped: bool = True

    @classmethod
    def of(cls, meta: Mapping[str, Any] | None) -> Skipped | None:
        """The skip recorded in ``meta``, or ``None`` when the asset did its work."""
        if not meta or not meta.get("skipped"):
            return None
        return cls(reason=str(meta.get("reason", "")))
