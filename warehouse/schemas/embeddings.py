"""Tables of the embeddings stage: one table per encoder, ``embeddings_<encoder>`` (registered on import).

The vector width depends on the encoder, so the spec is made by :func:`embedding_spec`; the encoders
of :mod:`features.embeddings` are registered here on import (their widths are in
:data:`KNOWN_ENCODER_DIMS`, kept equal to that registry by a test), so SQL sees their tables even
before they are written.
"""

from __future__ import annotations

import re

import pyarrow as pa

from warehouse.schemas import TableSpec, get, register, registered

__all__ = ["KNOWN_ENCODER_DIMS", "TABLE_PREFIX", "embedding_spec", "embedding_table", "encoder_of_table"]

TABLE_PREFIX = "embeddings_"

KNOWN_ENCODER_DIMS: dict[str, int] = {"dinov2_vits14": 384, "dinov2_vitb14": 768, "random_vits14": 384,
                                      "ssl_resnet18": 256}
"""Embedding width of each encoder in ``features.embeddings.ENCODERS``."""


def embedding_table(encoder: str) -> str:
    """The table name of an encoder's embeddings: ``embeddings_<encoder>``."""
    if not re.fullmatch(r"[a-z0-9_]+", encoder):
        raise ValueError(f"invalid encoder name {encoder!r} (lower-case letters, digits and _ only)")
    return TABLE_PREFIX + encoder


def encoder_of_table(table: str) -> str | None:
    """The encoder name of an embeddings table, or None for any other table."""
    return table[len(TABLE_PREFIX):] if table.startswith(TABLE_PREFIX) else None


def embedding_spec(encoder: str, dim: int) -> TableSpec:
    """The spec of ``embeddings_<encoder>``, registered (idempotent for the same width).

    Columns: ``galaxy_id`` (key), ``shard``, ``encoder``, ``weights_sha256`` (of the weights file, or
    of the seeded initial state of a random baseline), ``weights_origin`` (a
    :class:`features.weights.WeightsOrigin` value: ``local`` / ``cache`` / ``download`` / ``random init`` / ``self-supervised``), ``flags`` (``Flag.RANDOM_WEIGHTS``, image flags), ``vector`` (the CLS
    token, ``float32[dim]``, used for search) and ``patch_mean`` (mean patch token, ``float32[dim]``).

    Raises
    ------
    ValueError
        A non-positive width, a bad name, or a table already registered with another width.
    """
    if int(dim) <= 0:
        raise ValueError(f"embedding width must be positive, got {dim}")
    name = embedding_table(encoder)
    if name in registered():
        spec = get(name)
        if spec.columns.field("vector").type.list_size != int(dim):
            raise ValueError(f"table {name!r} is registered with width "
                             f"{spec.columns.field('vector').type.list_size}, not {dim}")
        return spec
    vec = pa.list_(pa.float32(), int(dim))
    return register(
        TableSpec(
            name=name,
            keys=("galaxy_id",),
            description=f"{encoder} embeddings: CLS token (vector, used for search) and mean patch token",
            columns=pa.schema(
                [
                    pa.field("galaxy_id", pa.string(), nullable=False),
                    pa.field("shard", pa.string(), nullable=False),
                    pa.field("encoder", pa.string(), nullable=False),
                    pa.field("weights_sha256", pa.string(), nullable=False),
                    pa.field("weights_origin", pa.string(), nullable=False),
                    pa.field("flags", pa.int64(), nullable=False),
                    pa.field("vector", vec, nullable=False),
                    pa.field("patch_mean", vec, nullable=False),
                ]
            ),
            metadata={"encoder": encoder, "dim": str(int(dim))},
        )
    )


for _name, _dim in KNOWN_ENCODER_DIMS.items():
    embedding_spec(_name, _dim)
