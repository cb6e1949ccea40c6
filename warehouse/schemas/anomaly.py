"""Tables of anomaly scores, people's labels and rankings (registered on import).

* ``anomaly_scores``: one row per (galaxy, encoder, method): the raw score (larger = more anomalous),
  its rank in [0, 1] among the galaxies scored together, the embeddings table version and the
  parameters it came from. Replaced per (encoder, method) in one commit.
* ``labels``: people's labels, append-only: one row per act of labelling (``label_id`` a fresh UUID),
  with the galaxy, the label ``name`` (``interesting``, ``artefact``, a class), a numeric ``value``
  (1 yes, 0 no, grades between), ``who``, ``labelled_at`` and ``source`` (``cli``, ``page``, ``api``,
  ``import``). Nothing is overwritten; the view ``latest_labels`` keeps the newest per (galaxy, name, who).
  Catalogue labels (``galaxies.label``) are never touched.
* ``rankings``: one row per (galaxy, label, who, encoder): the ranking model's score, its prediction and
  uncertainty, the acquisition order (``position``, 1-based; 0 for a labelled galaxy), and what it used
  (labels count and ``labels`` table version, embeddings and anomaly versions, model parameters).
"""

from __future__ import annotations

import pyarrow as pa

from warehouse.schemas import TableSpec, register

__all__ = ["ANOMALY_SCORES", "LABELS", "LABEL_SOURCES", "RANKINGS"]

LABEL_SOURCES: tuple[str, ...] = ("cli", "page", "api", "import")
"""Where a label may come from."""

ANOMALY_SCORES = register(
    TableSpec(
        name="anomaly_scores",
        keys=("galaxy_id", "encoder", "method"),
        description="anomaly score and rank in [0, 1] per galaxy, encoder and method (iforest, knn)",
        columns=pa.schema(
            [
                pa.field("galaxy_id", pa.string(), nullable=False),
                pa.field("encoder", pa.string(), nullable=False),
                pa.field("method", pa.string(), nullable=False),
                pa.field("score", pa.float64(), nullable=False),
                pa.field("rank", pa.float64(), nullable=False),
                pa.field("embeddings_version", pa.int64(), nullable=False),
                pa.field("params_json", pa.string(), nullable=False),
            ]
        ),
    )
)

LABELS = register(
    TableSpec(
        name="labels",
        keys=("label_id",),
        description="people's labels, append-only (galaxy, name, value, who, when, source)",
        columns=pa.schema(
            [
                pa.field("label_id", pa.string(), nullable=False),
                pa.field("galaxy_id", pa.string(), nullable=False),
                pa.field("name", pa.string(), nullable=False),
                pa.field("value", pa.float64(), nullable=False),
                pa.field("who", pa.string(), nullable=False),
                pa.field("labelled_at", pa.timestamp("us", tz="UTC"), nullable=False),
                pa.field("source", pa.string(), nullable=False),
            ]
        ),
    )
)

RANKINGS = register(
    TableSpec(
        name="rankings",
        keys=("galaxy_id", "label", "who", "encoder"),
        description="active-learning ranking per label, person and encoder: score, uncertainty, acquisition order",
        columns=pa.schema(
            [
                pa.field("galaxy_id", pa.string(), nullable=False),
                pa.field("label", pa.string(), nullable=False),
                pa.field("who", pa.string(), nullable=False),
                pa.field("encoder", pa.string(), nullable=False),
                pa.field("score", pa.float64(), nullable=False),
                pa.field("prediction", pa.float64(), nullable=False),
                pa.field("uncertainty", pa.float64(), nullable=False),
                pa.field("anomaly_rank", pa.float64(), nullable=False),
                pa.field("position", pa.int64(), nullable=False),
                pa.field("labelled_value", pa.float64()),
                pa.field("n_labels", pa.int64(), nullable=False),
                pa.field("labels_version", pa.int64(), nullable=False),
                pa.field("embeddings_version", pa.int64(), nullable=False),
                pa.field("anomaly_version", pa.int64(), nullable=False),
                pa.field("params_json", pa.string(), nullable=False),
            ]
        ),
    )
)
