"""A small warehouse for the HTTP service's tests: real ring-galaxy images, a real (random-weights) encoder.

Rows are written through ``Warehouse.upsert`` (real Lance): galaxies, images, photometry (one row with
``PHOT_NO_MATCH`` and NaN colours), ``embeddings_random_vits14`` (vectors of the real images by the
seeded random ViT-S/14, so an uploaded file finds its own galaxy at distance 0) and a gate-passing
model with predictions.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa

ENCODER = "random_vits14"
CLASSES = ["No ring", "Ring"]


def _fill(table: str, n: int, **columns) -> pa.Table:
    from warehouse import schemas

    return schemas.rows_with_defaults(table, n, **columns)


def ring_files(shared_dir: Path, n: int) -> list[tuple[dict, Path]]:
    """The first ``n`` catalogue rows of ``gz_decals_rings`` with their image files."""
    root = shared_dir / "gz_decals_rings"
    with open(root / "catalog.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[:n]
    return [(r, root / "images" / f"{r['id']}.png") for r in rows]


def build_service_warehouse(root: Path, shared_dir: Path, n: int = 12):
    """Write the test warehouse under ``root``; returns ``(warehouse, {galaxy_id: image file})``."""
    from features.embeddings import embed_images, load_image_file
    from features.flags import Flag
    from stages.embeddings import get_encoder
    from warehouse import Warehouse
    from warehouse.images import encode_image
    from warehouse.schemas.embeddings import embedding_spec

    wh = Warehouse.open(root)
    files = ring_files(shared_dir, n)
    ids = [f"rings:{r['id']}" for r, _ in files]
    labels = [int(r["ring"]) for r, _ in files]
    images = [load_image_file(p) for _, p in files]
    shard = ["rings-00000"] * n
    wh.upsert("galaxies", _fill(
        "galaxies", n, galaxy_id=ids, source=["rings"] * n, native_id=[r["id"] for r, _ in files], shard=shard,
        row_index=list(range(n)), ra=[float(r["ra"]) for r, _ in files], dec=[float(r["dec"]) for r, _ in files],
        label=labels, label_name=[CLASSES[v] for v in labels], image_sha1=["0" * 40] * n,
        flags=[int(Flag.IMAGE_NAN) if i == 1 else 0 for i in range(n)]))
    encoded = [encode_image(im) for im in images]
    wh.upsert("images", _fill(
        "images", n, galaxy_id=ids, shard=shard, encoding=[e for e, _ in encoded], data=[d for _, d in encoded],
        height=[im.shape[0] for im in images], width=[im.shape[1] for im in images],
        channels=[im.shape[2] for im in images], dtype=["uint8"] * n, bands=["grz"] * n, image_kind=["composite"] * n))
    g_r = [float("nan") if i == 0 else 0.3 + 0.05 * i for i in range(n)]
    wh.upsert("photometry", _fill(
        "photometry", n, galaxy_id=ids, shard=shard, source=["rings"] * n, n_candidates=[1] * n, g_r=g_r,
        flags=[int(Flag.PHOT_NO_MATCH) if i == 0 else 0 for i in range(n)]))
    enc, _ = get_encoder(ENCODER, "", False)
    cls, patch = embed_images(images, enc, batch_size=n)
    spec = embedding_spec(ENCODER, cls.shape[1])

    def fsl(m: np.ndarray) -> pa.FixedSizeListArray:
        return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(m, np.float32).ravel()), m.shape[1])

    wh.upsert(spec.name, pa.table({
        "galaxy_id": ids, "shard": shard, "encoder": [ENCODER] * n, "weights_sha256": [enc.weights_sha256] * n,
        "weights_origin": [str(enc.weights_origin)] * n, "flags": pa.array([0] * n, pa.int64()),
        "vector": fsl(cls), "patch_mean": fsl(patch)}), spec=spec)
    wh.upsert("models", _fill(
        "models", 1, name=["dinov2_probe"], version=[1], kind=["probe"], label_column=["label"],
        split_name=["label-s0"], classes_json=[json.dumps([{"label": i, "name": c} for i, c in enumerate(CLASSES)])],
        config_json=["{}"], metrics_json=["{}"], gate_passed=[True], gate_json=["{}"], excluded_classes_json=["[]"],
        artefact_path=[""], table_versions_json=["{}"], weights_origin=["random init"]))
    probs = [[0.2, 0.8] if v else [0.7, 0.3] for v in labels]
    wh.upsert("predictions", _fill(
        "predictions", n, galaxy_id=ids, model_name=["dinov2_probe"] * n, model_version=[1] * n,
        probabilities=probs, predicted_label=[int(np.argmax(p)) for p in probs],
        predicted_name=[CLASSES[int(np.argmax(p))] for p in probs], split=["test"] * n))
    return wh, {g: p for g, (_, p) in zip(ids, files)}
