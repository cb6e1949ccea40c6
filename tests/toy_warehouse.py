"""A toy warehouse for the training-stage tests: labelled stamps, their images and embeddings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from features.weights import WeightsOrigin
from models.toy import toy_embeddings, toy_images, toy_rows

ENCODER = "random_vits14"


def fill_toy_warehouse(wh, n=64, size=32, *, seed=0, extra=None, embeddings=True, encoder=ENCODER, sha="0" * 64,
          separation=0.3, blind_images=False, labels=None):
    """Toy galaxies; ``blind_images``: the stamps are drawn for shuffled labels, so pixels say nothing."""
    images, y = toy_images(n, size, seed=seed)
    if blind_images:
        y = np.random.default_rng(seed + 1).permutation(y)
    if labels is not None:
        y = np.asarray(labels)
    gal, img = toy_rows(images, y, extra=extra)
    wh.upsert("galaxies", pa.table(gal))
    wh.upsert("images", pa.table(img))
    if embeddings:
        from warehouse.schemas.embeddings import embedding_spec

        vec, patch = toy_embeddings(y, 384, seed=seed, separation=separation)
        random = encoder.startswith("random")
        wh.upsert(f"embeddings_{encoder}", pa.table({
            "galaxy_id": gal["galaxy_id"], "shard": gal["shard"], "encoder": [encoder] * n,
            "weights_sha256": [sha] * n, "weights_origin": [WeightsOrigin.RANDOM_INIT.value if random else WeightsOrigin.LOCAL.value] * n,
            "flags": [(1 << 32) if random else 0] * n,
            "vector": list(vec), "patch_mean": list(patch)}), spec=embedding_spec(encoder, 384))
    return gal, y
