"""Which embeddings table a search reads, and a galaxy's stored vector in it."""

from __future__ import annotations

import numpy as np

from warehouse.errors import WarehouseError
from warehouse.schemas.embeddings import TABLE_PREFIX, embedding_table, encoder_of_table
from warehouse.search.matrix import as_matrix, dim_of
from warehouse.store import TableStore

__all__ = ["ENCODER_PREFERENCE", "embedding_tables", "pick_table", "query_vector"]

ENCODER_PREFERENCE = ("zoobot_convnext_nano", "dinov2_vits14", "dinov2_vitb14", "ssl_resnet18")
"""When several embeddings tables exist and no encoder is named, the first of these that exists."""


def embedding_tables(wh: TableStore) -> list[str]:
    """The embeddings tables that exist in the warehouse, sorted."""
    return [t for t in wh.tables() if t.startswith(TABLE_PREFIX)]


def pick_table(wh: TableStore, encoder: str | None = None) -> str:
    """The embeddings table to search: ``embeddings_<encoder>``, or the only / preferred one.

    Raises
    ------
    WarehouseError
        No embeddings exist, the named encoder has none, or several exist and none is preferred.
    """
    tables = embedding_tables(wh)
    if encoder:
        try:
            table = embedding_table(encoder)
        except ValueError as exc:
            raise WarehouseError(str(exc)) from None
        if table not in tables:
            have = ", ".join(encoder_of_table(t) or t for t in tables) or "none"
            raise WarehouseError(f"no embeddings for encoder {encoder!r} (have: {have}); run `astrovision embed`")
        return table
    if not tables:
        raise WarehouseError(f"no embeddings in {wh.root}; run `astrovision embed` (or the demo) first")
    if len(tables) == 1:
        return tables[0]
    for name in ENCODER_PREFERENCE:
        if embedding_table(name) in tables:
            return embedding_table(name)
    raise WarehouseError(
        f"several embeddings tables ({', '.join(tables)}); name one with encoder=... / --encoder"
    )


def query_vector(wh: TableStore, table: str, galaxy_id: str) -> np.ndarray:
    """The stored vector of one galaxy (``WarehouseError`` when it has none): a ``take`` by key."""
    if not wh.has_ids(table, [galaxy_id]):
        raise WarehouseError(f"galaxy {galaxy_id!r} has no vector in {table!r}; is the id right, and is it embedded?")
    rows = wh.take(table, [galaxy_id], columns=["vector"])
    return as_matrix(rows.column("vector"), dim_of(wh.dataset(table)))[0]
