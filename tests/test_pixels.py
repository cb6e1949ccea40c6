"""One image normalisation for training, embedding and query (`features.pixels.model_input`).

Unit tests of the mapping, then the end-to-end promise: a FITS (and a PNG) folder ingested and embedded
through the CLI gives each galaxy a stored vector equal to the one `similar --image FILE` computes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from features.embeddings import load_image_file, preprocess
from features.errors import InputError
from features.pixels import STRETCH_PERCENTILES, model_input, model_input_uint8

ENCODER = "random_vits14"


# ------------------------------------------------------------------------------------ the mapping
def test_uint8_composites_are_divided_by_255_and_nothing_else():
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3) * 3
    out = model_input(rgb)
    assert out.dtype == np.float32 and out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out, rgb.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(model_input_uint8(rgb), rgb)  # the training cache keeps them exactly


def test_channels_grey_two_bands_rgba_and_too_many():
    grey = np.full((3, 3), 255, np.uint8)
    np.testing.assert_array_equal(model_input(grey), np.ones((3, 3, 3), np.float32))
    two = np.stack([np.zeros((3, 3)), np.full((3, 3), 200.0)], axis=2).astype(np.uint8)
    assert model_input_uint8(two)[0, 0].tolist() == [0, 200, 100]  # third channel: the mean
    rgba = np.zeros((3, 3, 4), np.uint8)
    rgba[..., 3] = 255
    assert model_input(rgba).max() == 0.0  # alpha dropped
    with pytest.raises(InputError, match=r"image 7: .*shape \(3, 3, 5\)"):
        model_input(np.zeros((3, 3, 5), np.float32), what="image 7")
    with pytest.raises(InputError, match="dtype"):
        model_input(np.zeros((3, 3), complex))


def test_flux_is_one_percentile_stretch_over_all_channels():
    rng = np.random.default_rng(0)
    flux = rng.normal(0.0, 1.0, (16, 16, 3)).astype(np.float32)
    flux[..., 0] *= 3.0  # a brighter band stays brighter: one pair of limits for all channels
    lo, hi = np.percentile(flux.astype(np.float64), STRETCH_PERCENTILES)
    want = np.clip((flux.astype(np.float64) - lo) / (hi - lo), 0, 1).astype(np.float32)
    out = model_input(flux)
    np.testing.assert_array_equal(out, want)
    assert out[..., 0].std() > 2 * out[..., 1].std()
    assert out.min() == 0.0 and out.max() == 1.0
    # invariant to the flux unit (a calibration scale and offset), as a stretch should be
    np.testing.assert_allclose(model_input(flux * 7.5 + 100.0), out, atol=1e-5)


def test_flux_nan_blank_and_sparse_images():
    flux = np.arange(36, dtype=np.float32).reshape(6, 6)
    flux[2, 3] = np.nan
    flux[0, 0] = np.inf
    out = model_input(flux)
    assert np.isfinite(out).all()
    assert out[2, 3].tolist() == [0.0, 0.0, 0.0] and out[0, 0].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_array_equal(model_input(np.full((4, 4), np.nan, np.float32)), np.zeros((4, 4, 3)))
    np.testing.assert_array_equal(model_input(np.full((4, 4), 3.0, np.float32)), np.zeros((4, 4, 3)))
    sparse = np.zeros((40, 40), np.float32)  # > 99% one value: min-max instead of two equal percentiles
    sparse[5, 5] = 4.0
    assert model_input(sparse)[5, 5, 0] == 1.0 and model_input(sparse).sum() == 3.0


def test_flux_in_8_bits_is_the_rounded_float():
    flux = np.random.default_rng(1).lognormal(0, 1, (10, 10)).astype(np.float32)
    q = model_input_uint8(flux)
    assert q.dtype == np.uint8 and q.shape == (10, 10, 3) and q.flags.c_contiguous
    np.testing.assert_array_equal(q, np.round(model_input(flux) * 255).astype(np.uint8))
    assert np.abs(q / 255.0 - model_input(flux)).max() <= 0.5 / 255 + 1e-7


def test_an_image_looks_the_same_whatever_the_batch():
    """No batch or query context: an image alone and among others gives the same model input."""
    rng = np.random.default_rng(2)
    flux = rng.normal(0, 1, (20, 20, 1)).astype(np.float32)
    bright = rng.normal(100, 50, (20, 20, 1)).astype(np.float32)
    alone = preprocess([flux], 28)
    together = preprocess([bright, flux, np.zeros((20, 20, 3), np.uint8)], 28)
    np.testing.assert_array_equal(alone[0], together[1])


def test_stacked_uint8_fast_path_equals_the_function():
    stack = np.random.default_rng(3).integers(0, 256, (3, 14, 14, 3), dtype=np.uint8)
    np.testing.assert_array_equal(preprocess(stack, 28), preprocess(list(stack), 28))


# ------------------------------------------------------------------------------------ stored == query
def _galaxy(rng: np.random.Generator, size: int, k: int) -> np.ndarray:
    """A Gaussian galaxy in sky noise (flux units), different in size and position for each k."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    cy, cx = size / 2 + (k % 3) - 1, size / 2 - (k % 2)
    r = 1.5 + 1.2 * k
    return 5.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)) + rng.normal(0.02, 0.05, (size, size))


def _write_folder(root: Path, kind: str, n: int = 5, size: int = 32) -> list[Path]:
    """n images (FITS flux with one NaN pixel, or PNG composites) and catalog.csv with id, ra, dec."""
    rng = np.random.default_rng(11)
    (root / "images").mkdir(parents=True)
    files = []
    for k in range(n):
        flux = _galaxy(rng, size, k)
        if kind == "fits":
            data = flux.astype(np.float32)
            if k == 1:
                data[0, 0] = np.nan  # stored as NaN, shown to the models as 0 and flagged
            path = root / "images" / f"g{k}.fits"
            fits.PrimaryHDU(data).writeto(path)
        else:
            rgb = np.clip(np.stack([flux, 0.8 * flux, 0.5 * flux], axis=2) * 50, 0, 255).astype(np.uint8)
            path = root / "images" / f"g{k}.png"
            Image.fromarray(rgb).save(path)
        files.append(path)
    with open(root / "catalog.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "ra", "dec"])
        w.writerows([[f"g{k}", f"{150 + 0.01 * k:.3f}", f"{2 + 0.01 * k:.3f}"] for k in range(n)])
    return files


@pytest.fixture(scope="module", params=["fits", "png"])
def embedded_folder(request, tmp_path_factory):
    """A folder ingested and embedded (random_vits14, offline) through the CLI: (warehouse, {file: galaxy_id})."""
    from service.cli import main
    from warehouse import Warehouse

    tmp = tmp_path_factory.mktemp(f"pixels_{request.param}")
    files = _write_folder(tmp / "survey", request.param)
    home = tmp / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASTROVISION_HOME", str(home))  # main() sets it; restored afterwards
        mp.setenv("HF_HUB_OFFLINE", "1")
        assert main(["--home", str(home), "ingest", "--source", "folder", "--path", str(tmp / "survey")]) == 0
        assert main(["--home", str(home), "embed", "--encoder", ENCODER, "--quiet", "--no-download"]) == 0
    wh = Warehouse.open(home)
    rows = wh.read("galaxies", columns=["galaxy_id", "native_id"]).to_pylist()
    by_native = {r["native_id"]: r["galaxy_id"] for r in rows}
    return wh, {f: by_native[f.name.split(".")[0]] for f in files}


def test_query_file_has_the_stored_pixels_and_vector(embedded_folder):
    from service.commands.embed import embed_query_image

    wh, ids = embedded_folder
    table = f"embeddings_{ENCODER}"
    stored = wh.take(table, list(ids.values()), columns=["galaxy_id", "vector", "weights_origin"])
    vectors = dict(zip(stored.column("galaxy_id").to_pylist(),
                       np.stack(stored.column("vector").to_numpy(zero_copy_only=False))))
    assert set(stored.column("weights_origin").to_pylist()) == {"random init"}
    for path, gid in ids.items():
        np.testing.assert_array_equal(model_input(load_image_file(path)), model_input(wh.read_image(gid)))
        vec, encoder = embed_query_image(wh, path, ENCODER)
        assert encoder == ENCODER
        np.testing.assert_allclose(vec, vectors[gid], rtol=1e-5, atol=1e-5)


def test_similar_by_image_finds_the_galaxy_at_distance_zero(embedded_folder, capsys):
    from service.cli import main
    from service.commands.embed import embed_query_image
    from warehouse import search

    wh, ids = embedded_folder
    for path, gid in ids.items():
        vec, _ = embed_query_image(wh, path, ENCODER)
        res = search.similar(wh, vec, k=3, encoder=ENCODER, exact=True)
        assert res["galaxy_id"][0] == gid
        assert abs(res["distance"][0]) < 1e-5
        assert res["distance"][1] > res["distance"][0]
    path, gid = next(iter(ids.items()))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASTROVISION_HOME", str(wh.root))
        assert main(["--home", str(wh.root), "similar", "--image", str(path), "-k", "2",
                     "--encoder", ENCODER, "--exact"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if any(g in line for g in ids.values())]
    assert gid in printed[0]  # the CLI ranks the same galaxy first


def test_query_image_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_image_file(tmp_path / "missing.fits")
    bad = tmp_path / "broken.fits"
    bad.write_bytes(b"SIMPLE  = not really a FITS file")
    with pytest.raises(InputError, match=r"broken\.fits"):
        load_image_file(bad)
    grey16 = tmp_path / "deep.png"
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(grey16)
    with pytest.raises(InputError, match=r"deep\.png: image mode"):  # refused at ingest too: store as FITS
        load_image_file(grey16)
