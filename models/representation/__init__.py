"""What embeddings encode: maps (PCA, UMAP), rank correlations with error bars, grouped CV R^2, figures.

* :mod:`models.representation.maps` - :func:`pca_map`, :func:`umap_map`, :func:`neighbourhood_preservation`
* :mod:`models.representation.stats` - :func:`spearman_ci`, :func:`bh_qvalues`, :func:`grouped_folds`,
  :func:`grouped_cv_r2`
* :mod:`models.representation.plots` - PNG bytes of the maps, the correlation heatmap and the R^2 bars

Arrays in, arrays out: no warehouse, no Dagster (the glue is :mod:`stages.analysis`).
"""

from models.representation.maps import (
    UMAP_MAX_FIT,
    PCAMap,
    UMAPMap,
    neighbourhood_preservation,
    pca_map,
    umap_map,
)
from models.representation.stats import Estimate, bh_qvalues, grouped_cv_r2, grouped_folds, spearman_ci

__all__ = [
    "UMAP_MAX_FIT",
    "Estimate",
    "PCAMap",
    "UMAPMap",
    "bh_qvalues",
    "grouped_cv_r2",
    "grouped_folds",
    "neighbourhood_preservation",
    "pca_map",
    "spearman_ci",
    "umap_map",
]
