"""Shared fixtures. Domain-specific fixtures live in the test module that uses them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED = PROJECT_ROOT.parent / "shared"


@pytest.fixture
def shared_dir() -> Path:
    """``../shared`` (read-only real data); tests that need it are skipped when it is absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED / "data"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No DINOv2 weights anywhere and no network: an ``auto`` encoder cannot resolve DINOv2."""
    from features.embeddings import ENCODERS
    from features.weights import env_var_name

    for spec in ENCODERS.values():
        if spec.hf_repo:
            monkeypatch.delenv(env_var_name(spec.hf_repo), raising=False)
    monkeypatch.delenv("ASTROVISION_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))


@pytest.fixture
def warehouse(tmp_path: Path):
    """A fresh, empty warehouse in a temporary directory."""
    from warehouse import Warehouse

    return Warehouse.open(tmp_path / "wh")


def write_galaxy10_h5(path: Path, n: int = 10, size: int = 256, seed: int = 0, duplicate: tuple[int, int] | None = None) -> Path:
    """A tiny ``Galaxy10_DECals.h5`` with the real keys and dtypes (uint8 images N x size x size x 3).

    Images are a Gaussian blob on noise; ``duplicate=(a, b)`` makes row b an exact copy of row a at the
    same position (a known near-duplicate pair, as in the real file).
    """
    import h5py
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - size / 2
    images = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        blob = 200 * np.exp(-(xx**2 + yy**2) / (2 * (size / 12 + i) ** 2))
        images[i] = np.clip(blob[..., None] + rng.normal(20, 5, (size, size, 3)), 0, 255).astype(np.uint8)
    ra = 150.0 + np.arange(n) * 0.01
    dec = 2.0 + np.arange(n) * 0.01
    if duplicate:
        a, b = duplicate
        images[b] = images[a]
        ra[b], dec[b] = ra[a] + 1e-4, dec[a]
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=(1, size, size, 3))
        f.create_dataset("ans", data=(np.arange(n) % 10).astype(np.uint8))
        f.create_dataset("ra", data=ra)
        f.create_dataset("dec", data=dec)
        f.create_dataset("redshift", data=np.full(n, 0.05))
        f.create_dataset("pxscale", data=np.full(n, 0.262))
    return path


@pytest.fixture
def galaxy10_h5(tmp_path: Path) -> Path:
    """A 10-galaxy Galaxy10-format file where rows 3 and 7 are duplicates."""
    return write_galaxy10_h5(tmp_path / "Galaxy10_DECals.h5", n=10, duplicate=(3, 7))


def copy_rings(shared_dir: Path, dest: Path, start: int, stop: int) -> Path:
    """A folder source at ``dest`` holding rows ``[start, stop)`` of the real ring sample (images copied,
    catalogue rows kept in file order)."""
    import csv
    import shutil

    rings = shared_dir / "gz_decals_rings"
    with open(rings / "catalog.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    (dest / "images").mkdir(parents=True)
    for row in rows[1 + start:1 + stop]:
        shutil.copy(rings / "images" / f"{row[0]}.png", dest / "images" / f"{row[0]}.png")
    with open(dest / "catalog.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([rows[0], *rows[1 + start:1 + stop]])
    return dest
