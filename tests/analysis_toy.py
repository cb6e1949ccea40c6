"""A toy warehouse for the analysis tests: galaxies, images, two encoders' embeddings, morphometrics."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from features.weights import WeightsOrigin
from models.toy import toy_images, toy_rows
from warehouse.schemas import get
from warehouse.schemas.embeddings import embedding_spec

__all__ = ["fill_toy"]


def _full(table: str, n: int, **given) -> pa.Table:
    """Rows of ``table`` with the ``given`` columns and nulls (or zeros / empty text) in the others."""
    spec = get(table)
    cols = {}
    for f in spec.columns:
        if f.name in given:
            cols[f.name] = pa.array(given[f.name], f.type)
        elif f.nullable:
            cols[f.name] = pa.nulls(n, f.type)
        else:
            cols[f.name] = pa.array([0 if pa.types.is_integer(f.type) else ""] * n, f.type)
    return pa.table(cols)


def fill_toy(wh, n: int = 60, *, seed: int = 0, groups: list | None = None) -> dict[str, np.ndarray]:
    """Toy galaxies whose ``dinov2_vits14`` (fake, ``local`` weights) PC1 tracks Gini; ``random_vits14``
    vectors are noise. Returns the Gini values and labels."""
    rng = np.random.default_rng(seed)
    images, y = toy_images(n, 32, seed=seed)
    gal, img = toy_rows(images, y, groups=groups)
    wh.upsert("galaxies", pa.table(gal))
    wh.upsert("images", pa.table(img))
    gini = rng.uniform(0.3, 0.7, n)
    ids = gal["galaxy_id"]
    signal = rng.normal(0, 0.05, (n, 384)).astype(np.float32)
    signal[:, 0] = (gini - 0.5) * 100
    for enc, vec, origin in (("dinov2_vits14", signal, WeightsOrigin.LOCAL),
                             ("random_vits14", rng.normal(0, 1, (n, 384)).astype(np.float32),
                              WeightsOrigin.RANDOM_INIT)):
        wh.upsert(f"embeddings_{enc}", pa.table({
            "galaxy_id": ids, "shard": gal["shard"], "encoder": [enc] * n,
            "weights_sha256": [enc[0] * 64] * n, "weights_origin": [origin.value] * n,
            "flags": [0] * n, "vector": list(vec), "patch_mean": list(vec)}), spec=embedding_spec(enc, 384))
    wh.upsert("morphometrics", _full("morphometrics", n, galaxy_id=ids, band=["r"] * n, shard=gal["shard"],
                                     image_kind=["rgb_composite"] * n, method=["statmorph"] * n, gini=gini,
                                     m20=-1.5 - 2 * gini + rng.normal(0, 0.05, n), flags=[0] * n,
                                     statmorph_version=["0.7.2"] * n))
    return {"gini": gini, "label": y, "ids": np.array(ids)}
