"""Typed results of the analysis stage (the metadata of ``embedding_maps`` and ``representation_analysis``).

Each figure is one metadata entry, a PNG inlined as markdown under the figure's key, so the Dagster UI
shows it with the run; :meth:`StageResult.from_metadata` gathers those entries back into ``figures``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from stages.results import Markdown, StageResult, markdown_png

if TYPE_CHECKING:
    from stages.analysis import AnalysisOutcome, MapsOutcome

__all__ = ["AnalysisResult", "MapsResult"]

F = TypeVar("F", bound="_WithFigures")

_NO_TABLE = Markdown("")


@dataclass(frozen=True)
class _WithFigures(StageResult):
    """A result whose ``figures`` (key -> markdown image) are metadata entries of their own."""

    figures: dict[str, Markdown] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, Any]:
        meta = super().to_metadata()
        figures = meta.pop("figures")
        return {**meta, **figures}

    @classmethod
    def from_metadata(cls: type[F], meta: Mapping[str, Any]) -> F:
        names = {f.name for f in dataclasses.fields(cls)}
        base = super().from_metadata({k: v for k, v in meta.items() if k in names and k != "figures"})
        figures = {k: Markdown(v) for k, v in meta.items() if k not in names}
        return dataclasses.replace(base, figures=figures)


@dataclass(frozen=True)
class MapsResult(_WithFigures):
    """PCA / UMAP maps of every encoder (the ``embedding_maps`` asset's metadata)."""

    encoders: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    weights: str = ""
    """``encoder: weights_origin`` of every mapped encoder."""
    notes: str = "none"

    @classmethod
    def of(cls, out: MapsOutcome) -> MapsResult:
        """From what :func:`stages.analysis.build_maps` returned (its figures read and inlined)."""
        return cls(encoders=out.encoders, seconds=out.seconds,
                   weights=", ".join(f"{e}: {i['weights_origin']}" for e, i in out.encoders.items()),
                   notes="; ".join(out.notes) or "none",
                   figures={key: markdown_png(path, key) for key, path in out.figures.items()})


@dataclass(frozen=True)
class AnalysisResult(_WithFigures):
    """What the embeddings encode (the ``representation_analysis`` asset's metadata)."""

    rows: int = 0
    significant_rho_q05: int = 0
    """Spearman correlations with a BH q below 0.05."""
    r2_cv: Markdown = _NO_TABLE
    """Cross-validated R^2 of each quantity from each feature set, with its 95% CI, as a markdown table."""
    notes: str = "none"
    seconds: float = 0.0

    @classmethod
    def of(cls, out: AnalysisOutcome) -> AnalysisResult:
        """From what :func:`stages.analysis.analyse` returned (its figures read and inlined)."""
        rows = out.rows.to_pylist()
        r2 = [r for r in rows if r["statistic"] == "r2_cv"]
        table = "\n".join(f"| {r['quantity']} | {r['encoder']} | {r['value']:.3f} | [{r['ci_low']:.3f}, "
                          f"{r['ci_high']:.3f}] | {r['weights_origin']} |" for r in r2)
        return cls(
            rows=out.rows.num_rows,
            significant_rho_q05=sum(1 for r in rows if r["statistic"].startswith("spearman") and r["q"] < 0.05),
            r2_cv=Markdown("| quantity | features | R^2 | 95% CI | weights |\n|---|---|---|---|---|\n" + table),
            notes="; ".join(out.notes) or "none",
            seconds=out.seconds,
            figures={key: markdown_png(path, key) for key, path in out.figures.items()},
        )
