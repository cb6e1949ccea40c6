"""Tables of the analysis stage (registered on import): ``embedding_maps``, ``embedding_pca``,
``representation_analysis``.

* ``embedding_maps``: one row per (galaxy, encoder, method): the galaxy's map coordinates ``x``, ``y``
  (PC1 / PC2 for ``pca``) and, for ``pca``, every stored component in ``coords``; ``fitted`` says
  whether a UMAP was fitted on the galaxy or placed it by ``transform`` (a subsample above a size).
  The embeddings table version and the weights (origin and SHA-256) they were computed from travel
  with every row, so ``JOIN galaxy_features USING (galaxy_id)`` puts a map beside any feature.
* ``embedding_pca``: the principal axes of each encoder's vectors (``loading``) with their explained
  variance (absolute and as a fraction of the total).
* ``representation_analysis``: one row per (quantity, encoder, statistic): Spearman rho of a principal
  component (``spearman_pc<k>``) or the grouped cross-validated ridge R^2 (``r2_cv``, and
  ``r2_cv_minus_pixels``: the paired difference from the pixel baseline), with its 95 % interval,
  p-value and Benjamini-Hochberg q over the rho grid. ``encoder = 'pixels'`` is the downsampled-image
  baseline; ``source`` names where the quantity came from (``galaxy_features`` or ``truth``) and
  ``subset`` which rows were used (``morph_ok``, ``phot_quality_ok``, ``all``).
"""

from __future__ import annotations

import pyarrow as pa

from warehouse.schemas import TableSpec, register

__all__ = ["ANALYSIS", "MAPS", "PCA"]

_F = pa.float64()

MAPS = register(
    TableSpec(
        name="embedding_maps",
        keys=("galaxy_id", "encoder", "method"),
        description="2-D maps of each encoder's embeddings (pca, umap) per galaxy, with the weights they came from",
        columns=pa.schema(
            [
                pa.field("galaxy_id", pa.string(), nullable=False),
                pa.field("encoder", pa.string(), nullable=False),
                pa.field("method", pa.string(), nullable=False),
                pa.field("x", _F),
                pa.field("y", _F),
                pa.field("coords", pa.list_(pa.float32()), nullable=False),
                pa.field("fitted", pa.bool_(), nullable=False),
                pa.field("params_json", pa.string(), nullable=False),
                pa.field("embeddings_version", pa.int64(), nullable=False),
                pa.field("weights_origin", pa.string(), nullable=False),
                pa.field("weights_sha256", pa.string(), nullable=False),
            ]
        ),
    )
)

PCA = register(
    TableSpec(
        name="embedding_pca",
        keys=("encoder", "component"),
        description="principal axes of each encoder's embeddings with their explained variance",
        columns=pa.schema(
            [
                pa.field("encoder", pa.string(), nullable=False),
                pa.field("component", pa.int32(), nullable=False),
                pa.field("explained_variance", _F, nullable=False),
                pa.field("explained_variance_ratio", _F, nullable=False),
                pa.field("loading", pa.list_(pa.float32()), nullable=False),
                pa.field("n_vectors", pa.int64(), nullable=False),
                pa.field("embeddings_version", pa.int64(), nullable=False),
                pa.field("weights_origin", pa.string(), nullable=False),
                pa.field("weights_sha256", pa.string(), nullable=False),
            ]
        ),
    )
)

ANALYSIS = register(
    TableSpec(
        name="representation_analysis",
        keys=("quantity", "encoder", "statistic"),
        description="Spearman rho of principal components and grouped CV R^2 per physical quantity and encoder, with CIs, p and BH q",
        columns=pa.schema(
            [
                pa.field("quantity", pa.string(), nullable=False),
                pa.field("encoder", pa.string(), nullable=False),
                pa.field("statistic", pa.string(), nullable=False),
                pa.field("value", _F),
                pa.field("ci_low", _F),
                pa.field("ci_high", _F),
                pa.field("p", _F),
                pa.field("q", _F),
                pa.field("n", pa.int64(), nullable=False),
                pa.field("source", pa.string(), nullable=False),
                pa.field("subset", pa.string(), nullable=False),
                pa.field("weights_origin", pa.string(), nullable=False),
                pa.field("weights_sha256", pa.string(), nullable=False),
                pa.field("embeddings_version", pa.int64()),
            ]
        ),
    )
)
