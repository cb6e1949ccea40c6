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


def _rows_for(spec, n, values):
    """Rows of every column of ``spec``: ``values`` where given, else NaN / 0 / "" / False by type."""
    cols = {}
    for f in spec.columns:
        if f.name in values:
            cols[f.name] = values[f.name]
        elif pa.types.is_floating(f.type):
            cols[f.name] = [float("nan")] * n
        elif pa.types.is_integer(f.type):
            cols[f.name] = [0] * n
        elif pa.types.is_boolean(f.type):
            cols[f.name] = [False] * n
        else:
            cols[f.name] = [""] * n
    return pa.table(cols, schema=spec.columns)


def fill_toy_tabular(wh, gal, y, *, seed=0, morph=True, phot=True, morph_bad_fraction=0.2, phot_bad_fraction=0.2,
                     separation=1.0, phot_source="toy"):
    """Toy ``morphometrics`` (band r) and ``photometry`` rows whose values carry the class; a fraction untrusted."""
    from features.flags import Flag
    from models.fusion_data import MORPH_COLUMNS
    from warehouse.schemas import registered

    rng = np.random.default_rng(seed)
    ids, n, y = gal["galaxy_id"], len(gal["galaxy_id"]), np.asarray(y)
    k = int(y.max()) + 1
    if morph:
        spec = registered()["morphometrics"]
        names = [c for c in MORPH_COLUMNS if c in spec.columns.names] + [
            c[:-7] for c in MORPH_COLUMNS if c.endswith("_arcsec") and c[:-7] in spec.columns.names]
        means = rng.normal(0, separation, (k, len(names)))
        vals = np.abs(means[y] + rng.normal(0, 1, (n, len(names)))) + 0.1
        bad = rng.random(n) < morph_bad_fraction
        values = {c: vals[:, j].tolist() for j, c in enumerate(names)}
        values.update({"galaxy_id": ids, "shard": gal["shard"], "band": ["r"] * n,
                       "flags": [int(Flag.MORPH_FAILED) if b else 0 for b in bad]})
        wh.upsert("morphometrics", _rows_for(spec, n, values))
    if phot:
        spec = registered()["photometry"]
        means = rng.normal(0, separation, (k, 9))
        vals = means[y] + rng.normal(0, 1, (n, 9))
        bad = rng.random(n) < phot_bad_fraction
        values = {f"modelMag_{b}": (vals[:, j] + 18).tolist() for j, b in enumerate("ugriz")}
        values.update({f"extinction_{b}": [0.05] * n for b in "ugriz"})
        values.update({c: vals[:, 5 + j].tolist() for j, c in enumerate(("u_g", "g_r", "r_i", "i_z"))})
        values.update({"galaxy_id": ids, "shard": gal["shard"], "source": [phot_source] * n, "n_candidates": [1] * n,
                       "quality_ok": (~bad).tolist(),
                       "flags": [int(Flag.PHOT_NO_MATCH) if b else 0 for b in bad]})
        wh.upsert("photometry", _rows_for(spec, n, values))


def write_image_shard(wh, ids: list[str], images: list[np.ndarray], shard: str = "demo-00000") -> list[str]:
    """``galaxies`` and ``images`` rows of one shard (two classes alternating), written through the warehouse."""
    from warehouse import schemas
    from warehouse.images import encode_image

    n = len(ids)
    gal_cols = schemas.get("galaxies").columns
    gal = {f.name: [None] * n for f in gal_cols}
    gal.update(galaxy_id=ids, source=["demo"] * n, native_id=[i.split(":")[1] for i in ids], shard=[shard] * n,
               row_index=list(range(n)), label=[i % 2 for i in range(n)],
               label_name=["Round Smooth" if i % 2 else "Barred Spiral" for i in range(n)],
               image_sha1=["x"] * n, flags=[0] * n)
    wh.upsert("galaxies", pa.table({f.name: pa.array(gal[f.name], f.type) for f in gal_cols}))
    enc = [encode_image(im) for im in images]
    h, w = images[0].shape[:2]
    wh.upsert("images", pa.table({
        "galaxy_id": ids, "shard": [shard] * n, "encoding": [e for e, _ in enc],
        "data": pa.array([d for _, d in enc], pa.large_binary()),
        "height": pa.array([h] * n, pa.int32()), "width": pa.array([w] * n, pa.int32()),
        "channels": pa.array([3] * n, pa.int32()), "dtype": [str(im.dtype) for im in images],
        "bands": ["grz"] * n, "image_kind": ["rgb"] * n, "stretch_json": [None] * n,
    }))
    return ids
