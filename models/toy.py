"""A tiny, seeded, separable image set for tests and benchmarks of the training stage.

Four classes of 8-bit RGB stamps with sky noise, each shape at a random position jitter, size,
orientation and brightness: ``0`` a round smooth blob (de Vaucouleurs-like), ``1`` an elongated
"cigar", ``2`` a ring, ``3`` a pair of blobs (merger). A small CNN separates them well above chance
(1/4) after a few hundred steps; the tests state the margin they require. Plus matching fake
embeddings (class means + Gaussian noise) for the probe.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["TOY_CLASSES", "toy_embeddings", "toy_images", "toy_rows"]

TOY_CLASSES: tuple[str, ...] = ("round", "cigar", "ring", "pair")


def toy_images(n: int, size: int = 48, *, seed: int = 0, n_classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """``n`` stamps ``(n, size, size, 3)`` uint8 and their labels (balanced, shuffled)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) - (size - 1) / 2
    out = np.empty((n, size, size, 3), np.uint8)
    for i, c in enumerate(labels):
        cx, cy = rng.normal(0, size * 0.03, 2)
        theta = rng.uniform(0, np.pi)
        r = size * rng.uniform(0.10, 0.16)
        x, y = xx - cx, yy - cy
        u = x * np.cos(theta) + y * np.sin(theta)
        v = -x * np.sin(theta) + y * np.cos(theta)
        if c == 0:
            img = np.exp(-(u**2 + v**2) / (2 * r**2))
        elif c == 1:
            img = np.exp(-(u**2 / (2 * (2.2 * r) ** 2) + v**2 / (2 * (0.45 * r) ** 2)))
        elif c == 2:
            rad = np.hypot(u, v)
            img = np.exp(-((rad - 1.6 * r) ** 2) / (2 * (0.35 * r) ** 2)) + 0.6 * np.exp(-rad**2 / (2 * (0.4 * r) ** 2))
        else:
            d = 1.3 * r
            img = np.exp(-((u - d) ** 2 + v**2) / (2 * (0.7 * r) ** 2)) + np.exp(-((u + d) ** 2 + v**2) / (2 * (0.7 * r) ** 2))
        img = img / img.max() * rng.uniform(0.6, 1.0)
        colour = np.array([1.0, 0.85, 0.7]) * rng.uniform(0.9, 1.1, 3)
        rgb = img[:, :, None] * colour + rng.normal(0.08, 0.03, (size, size, 3))
        out[i] = np.clip(rgb * 255, 0, 255).astype(np.uint8)
    return out, labels.astype(np.int64)


def toy_embeddings(labels: np.ndarray, dim: int = 16, *, seed: int = 0, separation: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Fake ``vector`` and ``patch_mean`` float32 arrays ``(n, dim)``: class means plus unit noise."""
    rng = np.random.default_rng(seed)
    k = int(labels.max()) + 1
    means = rng.normal(0, separation, (k, 2 * dim))
    x = means[labels] + rng.normal(0, 1, (len(labels), 2 * dim))
    x = x.astype(np.float32)
    return x[:, :dim], x[:, dim:]


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def toy_rows(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    source: str = "toy",
    shard: str = "toy-00000",
    names: tuple[str, ...] = TOY_CLASSES,
    extra: list[dict[str, Any]] | None = None,
    groups: list[str | None] | None = None,
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """Columns of ``galaxies`` and ``images`` rows for the toy stamps (to ``Warehouse.upsert``)."""
    n = len(labels)
    ids = [f"{source}:{i:06d}" for i in range(n)]
    galaxies = {
        "galaxy_id": ids, "source": [source] * n, "native_id": [f"{i:06d}" for i in range(n)],
        "shard": [shard] * n, "row_index": list(range(n)), "ra": [float(i) * 0.01 for i in range(n)],
        "dec": [0.0] * n, "redshift": [None] * n, "pxscale": [0.262] * n,
        "label": [int(v) for v in labels], "label_name": [names[int(v)] for v in labels],
        "extra_json": [json.dumps(e) if e else None for e in (extra or [None] * n)],
        "image_sha1": [f"{i:040x}" for i in range(n)], "duplicate_group": groups or [None] * n,
        "flags": [0] * n,
    }
    h, w = images.shape[1:3]
    imgs = {
        "galaxy_id": ids, "shard": [shard] * n, "encoding": ["png"] * n,
        "data": [_png(im) for im in images], "height": [h] * n, "width": [w] * n, "channels": [3] * n,
        "dtype": ["uint8"] * n, "bands": ["r,g,b"] * n, "image_kind": ["rgb_composite"] * n,
        "stretch_json": [None] * n,
    }
    return galaxies, imgs
