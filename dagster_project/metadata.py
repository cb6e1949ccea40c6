"""Stage results as Dagster metadata: the one place a :class:`stages.results.StageResult` meets Dagster."""

from __future__ import annotations

from typing import Any

import dagster as dg

from stages.results import Markdown, StageResult

__all__ = ["as_metadata"]


def as_metadata(result: StageResult) -> dict[str, Any]:
    """``result.to_metadata()`` with :class:`~stages.results.Markdown` values as Dagster markdown.

    Everything else (numbers, text, dicts and lists as JSON, paths, ``None``) Dagster types itself.
    """
    return {k: dg.MetadataValue.md(str(v)) if isinstance(v, Markdown) else v for k, v in result.to_metadata().items()}
