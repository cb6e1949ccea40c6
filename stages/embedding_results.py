"""Typed results of the embeddings stage: a shard embedded with every chosen encoder, the ANN indexes,
and the warehouse's own SSL encoder (the metadata of ``embeddings``, ``embedding_index``, ``ssl_encoder``).

Kept apart from :mod:`stages.embeddings` (which loads encoders and embeds) so that the CLI and the
asset definitions read these classes without importing torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.results import StageResult
from warehouse import quote

if TYPE_CHECKING:
    from stages.ssl import SSLOutcome
    from warehouse import Warehouse

__all__ = ["IndexResult", "SSLEncoderResult", "ShardEmbeddings", "embed_shard_encoders", "update_indexes"]


@dataclass(frozen=True)
class ShardEmbeddings(StageResult):
    """One shard embedded with every chosen encoder (the ``embeddings`` asset's metadata).

    The top-level fields describe the first table (the one search and the probe use: with ``auto``, the
    preferred encoder); ``tables`` has every table's entry: encoder, weights, note, ``rows`` (written),
    ``shard_galaxies`` (in the shard), ``sample`` (the baseline's expected sample size, 0: every galaxy),
    ``stored_rows`` (the shard's rows in the table after the write), ``flagged_images``, ``nan_vectors``, ``norm_min`` / ``norm_max``, ``unique_ids``, ``missing``,
    ``extra`` (stored vs expected galaxy ids) and ``galaxies_per_second``.
    """

    table: str
    tables: dict[str, dict[str, Any]]
    encoder: str
    random_weights: bool
    weights_origin: str
    weights_sha256: str
    encoder_note: str
    rows: int
    dim: int
    flagged_images: int
    galaxies_per_second: float


def embed_shard_encoders(wh: Warehouse, shard: str, *, encoder: str = "auto", weights_path: str = "",
                         allow_download: bool = True, batch_size: int = 32, run_id: str | None = None,
                         baseline_sample: int | None = None,
                         log: Callable[[str], None] = print) -> ShardEmbeddings:
    """Embed ``shard`` with ``encoder`` (``auto``: :func:`stages.embeddings.auto_encoders`, the
    ``random_vits14`` baseline on a hash sample of about ``baseline_sample`` galaxies beside another
    encoder; default :data:`features.embeddings.BASELINE_SAMPLE`) into each encoder's
    ``embeddings_<encoder>`` table, and measure what was stored (for the asset's checks)."""
    from features.embeddings import BASELINE_SAMPLE
    from stages.embeddings import (
        ChosenEncoder,
        auto_encoders,
        embed_shard,
        get_encoder,
        shard_ids,
        vector_stats,
    )
    from stages.progress import Progress

    sample = BASELINE_SAMPLE if baseline_sample is None else baseline_sample
    chosen = (auto_encoders(wh, weights_path, allow_download, sample) if encoder == "auto"
              else [ChosenEncoder(*get_encoder(encoder, weights_path, allow_download, wh))])
    per: dict[str, dict[str, Any]] = {}
    for c in chosen:
        enc = c.encoder
        log(c.note)
        total = len(shard_ids(wh, shard, c.sample)[0])
        with Progress(total, f"embeddings {enc.name} {shard}", log=log) as progress:
            result = embed_shard(wh, shard, enc, batch_size=batch_size, run_id=run_id, sample=c.sample,
                                 progress=lambda done, _total, p=progress: p.set(done))
        stats = vector_stats(wh, result.table, shard)
        expected = set(result.galaxy_ids)
        stored = set(wh.read(result.table, columns=["galaxy_id"], where=f"shard = {quote(shard)}")
                     .column("galaxy_id").to_pylist())
        per[result.table] = {
            "encoder": enc.name, "random_weights": enc.weights_origin.is_random,
            "weights_origin": enc.weights_origin.value, "weights_sha256": enc.weights_sha256, "note": c.note,
            "rows": result.rows, "shard_galaxies": result.shard_galaxies, "sample": c.sample,
            "stored_rows": stats["rows"], "flagged_images": result.flagged,
            "nan_vectors": stats["nan_vectors"],
            "norm_min": stats["norm_min"], "norm_max": stats["norm_max"], "unique_ids": stats["unique_ids"],
            "missing": len(expected - stored), "extra": len(stored - expected),
            "galaxies_per_second": result.rows / max(result.seconds, 1e-9),
        }
    table = next(iter(per))
    first = per[table]
    return ShardEmbeddings(
        table=table, tables=per, encoder=first["encoder"], random_weights=first["random_weights"],
        weights_origin=first["weights_origin"], weights_sha256=first["weights_sha256"], encoder_note=first["note"],
        rows=first["rows"], dim=chosen[0].encoder.dim, flagged_images=first["flagged_images"],
        galaxies_per_second=first["galaxies_per_second"],
    )


@dataclass(frozen=True)
class IndexResult(StageResult):
    """The ANN index of each embeddings table (the ``embedding_index`` asset's metadata).

    ``tables``: per table, ``search`` (``ann`` or ``exact``), ``action``, ``reason``, ``rows``,
    ``unindexed_before``, ``build_s``, ``index_bytes``, ``params`` and, with an index, ``recall_at_10``.
    """

    tables: dict[str, dict[str, Any]]
    min_rows: int
    nprobes: int
    refine_factor: int

    @property
    def worst_recall(self) -> float | None:
        """The lowest recall@10 over the indexed tables; ``None`` when every search is exact."""
        recalls = [e["recall_at_10"] for e in self.tables.values() if "recall_at_10" in e]
        return min(recalls) if recalls else None

    def search_note(self, table: str) -> str:
        """How ``table`` is searched after this run, in a few words (``no index run`` when not covered)."""
        entry = self.tables.get(table, {})
        return entry.get("reason") or entry.get("action") or "no index run"


def update_indexes(wh: Warehouse, *, encoder: str = "", min_rows: int | None = None,
                   log: Callable[[str], None] = print) -> IndexResult:
    """Build, extend or retrain the ANN index of ``encoder``'s table (empty: every embeddings table)."""
    from warehouse import search as vsearch

    min_rows = vsearch.INDEX_MIN_ROWS if min_rows is None else min_rows
    tables = [vsearch.pick_table(wh, encoder)] if encoder else vsearch.embedding_tables(wh)
    summary: dict[str, dict[str, Any]] = {}
    for table in tables:
        name = table.removeprefix("embeddings_")
        report = vsearch.update_index(wh, name, min_rows=min_rows)  # appended rows join the cells
        entry = {"search": report.search, "action": report.action or "none", "reason": report.reason,
                 "rows": report.rows, "unindexed_before": report.unindexed_before,
                 "build_s": round(report.build_s, 2), "index_bytes": report.index_bytes,
                 "params": report.params.as_dict() if report.params else None}
        if entry["search"] == "ann":
            entry["recall_at_10"] = vsearch.recall_at_k(wh, name)
        summary[table] = entry
        log(f"{table}: {entry}")
    return IndexResult(tables=summary, min_rows=min_rows, nprobes=vsearch.DEFAULT_NPROBES,
                       refine_factor=vsearch.DEFAULT_REFINE_FACTOR)


@dataclass(frozen=True)
class SSLEncoderResult(StageResult):
    """The warehouse's own encoder after :func:`stages.ssl.train_ssl_encoder` (the ``ssl_encoder`` metadata)."""

    encoder: str
    start: str
    weights_path: Path | str
    weights_sha256: str
    images: int
    table_versions: dict[str, int] = field(default_factory=dict)
    epochs: int = 0
    final_loss: float | None = None
    losses: list[float] = field(default_factory=list)
    resumed_from_epoch: int = 0
    reused: bool = False
    seconds_per_epoch: float | None = None
    images_per_second: float | None = None
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    objective: str = "SimCLR (Chen et al. 2020)"
    trained_on: int = 0
    """Galaxies trained on (at most ``max_images`` of ``images``)."""
    max_images: int = 0
    """The budget (0: every galaxy)."""

    @classmethod
    def of(cls, out: SSLOutcome) -> SSLEncoderResult:
        """From what :func:`stages.ssl.train_ssl_encoder` returned."""
        nan = float("nan")
        return cls(
            encoder=out.encoder, start=out.init, weights_path=Path(out.weights_path),
            weights_sha256=out.weights_sha256, images=out.n_images, table_versions=out.table_versions,
            epochs=len(out.losses), final_loss=out.losses[-1] if out.losses else nan, losses=out.losses,
            resumed_from_epoch=out.resumed_from, reused=out.reused,
            seconds_per_epoch=sum(out.epoch_seconds) / len(out.epoch_seconds) if out.epoch_seconds else nan,
            images_per_second=None if math.isnan(out.images_per_second) else out.images_per_second,
            seconds=out.seconds, config=out.config, trained_on=out.n_trained, max_images=out.max_images,
        )
