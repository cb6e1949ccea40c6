"""Folder source: PNG / JPEG / FITS images with a CSV catalogue, bad catalogues and bad files, and the
370 real Galaxy Zoo DECaLS ring galaxies."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from features.errors import InputError
from features.sources.folder import FolderSource, image_stem

RNG = np.random.default_rng(7)
HEADER = ["id", "ra", "dec", "ring", "score", "note"]
ROWS = [
    ["g1", "10.5", "-1.25", "1", "0.75", "spiral"],
    ["g2", "11.0", "2.0", "0", "0.5", ""],
    ["g3", "12.0", "3.0", "", "", "x"],
    ["g4", "13.0", "4.0", "1", "2", "y"],
]


def _rgb(h: int = 24, w: int = 20) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_catalog(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Three PNGs and one JPEG under images/, plus catalog.csv."""
    root = tmp_path / "survey"
    (root / "images").mkdir(parents=True)
    images = {}
    for gid in ("g1", "g2", "g3"):
        images[gid] = _rgb()
        Image.fromarray(images[gid]).save(root / "images" / f"{gid}.png")
    images["g4"] = np.full((24, 20, 3), 128, np.uint8)  # flat colour: JPEG is lossless enough for it
    Image.fromarray(images["g4"]).save(root / "images" / "g4.jpg", quality=95)
    write_catalog(root / "catalog.csv", ROWS)
    return root, images


def _batches(src: FolderSource, **kw) -> list:
    return list(src.iter_batches(**kw))


def test_image_stem_keeps_dots_in_ids() -> None:
    assert image_stem("J000411.19+020924.0.png") == ("J000411.19+020924.0", "png")
    assert image_stem("x.FITS.gz") == ("x", "fits")
    assert image_stem("catalog.csv") is None


def test_reads_images_labels_and_extra_columns(folder) -> None:
    root, images = folder
    src = FolderSource(root, label_column="ring")
    src.validate()
    assert len(src) == 4 and src.kind == "folder" and src.name == "survey" and src.orphans == []
    batches = _batches(src, batch_size=3)
    assert [len(b) for b in batches] == [3, 1]
    b = batches[0]
    assert b.galaxy_ids == ["survey:g1", "survey:g2", "survey:g3"]  # named after the directory
    np.testing.assert_array_equal(b.images[0], images["g1"])
    assert b.images[0].dtype == np.uint8 and b.images[0].shape == (24, 20, 3)
    assert b.image_kind == "rgb_composite" and b.bands == "z,r,g"
    assert b.labels.tolist() == [1, 0, -1] and b.label_names == ["ring=1", "ring=0", None]
    np.testing.assert_allclose(b.ra, [10.5, 11.0, 12.0])
    np.testing.assert_allclose(b.pxscale, 0.262)
    assert np.isnan(b.redshift).all()
    assert b.extra[0] == {"score": 0.75, "note": "spiral"}
    assert b.extra[1] == {"score": 0.5, "note": None}
    assert b.extra[2] == {"score": None, "note": "x"}
    last = batches[1]
    assert last.extra[0]["score"] == 2 and isinstance(last.extra[0]["score"], int)
    assert np.abs(last.images[0].astype(int) - 128).max() <= 2  # the JPEG
    assert last.row_index.tolist() == [3]


def test_text_labels_are_numbered_in_sorted_order(folder) -> None:
    root, _ = folder
    batch = _batches(FolderSource(root, label_column="note"))[0]
    assert batch.labels.tolist() == [0, -1, 1, 2]
    assert batch.label_names == ["spiral", None, "x", "y"]


def test_label_names_name_integer_labels(folder) -> None:
    root, _ = folder
    batch = _batches(FolderSource(root, label_column="ring", label_names=["no ring", "ring"]))[0]
    assert batch.label_names == ["ring", "no ring", None, "ring"]


def test_row_range_and_columns_for_pxscale_and_redshift(tmp_path: Path) -> None:
    for gid in ("a", "b", "c"):  # images directly in the folder, catalogue found as the only CSV
        Image.fromarray(_rgb(8, 8)).save(tmp_path / f"{gid}.png")
    write_catalog(tmp_path / "cat.csv", [["a", "1", "1", "0.4", "0.05"], ["b", "2", "2", "", "0.1"],
                                         ["c", "3", "3", "0.3", ""]],
                  header=["id", "ra", "dec", "pxscale", "redshift"])
    src = FolderSource(tmp_path, pxscale=None)
    src.validate()
    (b,) = _batches(src, start=1, stop=3)
    assert b.native_ids == ["b", "c"] and b.row_index.tolist() == [1, 2]
    assert np.isnan(b.pxscale[0]) and b.pxscale[1] == pytest.approx(0.3)
    assert b.redshift[0] == pytest.approx(0.1) and np.isnan(b.redshift[1])
    assert b.extra == [{}, {}]
    assert _batches(src, start=5) == []
    assert src.describe()["pxscale"] is None


def test_fits_images_become_float_flux_with_header_bands(tmp_path: Path) -> None:
    img = tmp_path / "images"
    img.mkdir()
    plane = RNG.normal(size=(16, 12)).astype(">f4")  # big-endian, as FITS stores it
    hdu = fits.PrimaryHDU(plane)
    hdu.header["BAND"] = "r"
    hdu.writeto(img / "f2d.fits")
    cube = RNG.normal(size=(3, 16, 12)).astype(np.float64)
    hdu = fits.PrimaryHDU(cube)
    hdu.header["BANDS"] = "g,r,z"
    hdu.writeto(img / "cube.fits")
    hdu = fits.PrimaryHDU(cube[:2])
    hdu.header["FILTER1"], hdu.header["FILTER2"] = "g", "i"
    hdu.writeto(img / "cube2.fits.gz")
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(plane.astype(np.float32))]).writeto(img / "ext.fits")
    Image.fromarray(_rgb(16, 12)).save(img / "p.png")
    ids = ["f2d", "cube", "cube2", "ext", "p"]
    write_catalog(tmp_path / "catalog.csv", [[g, "1", "1"] for g in ids], header=["id", "ra", "dec"])
    src = FolderSource(tmp_path)
    src.validate()
    batches = _batches(src, batch_size=10)
    # batches are cut where the image kind or band list changes
    assert [(b.native_ids, b.image_kind, b.bands) for b in batches] == [
        (["f2d"], "flux", "r"),
        (["cube"], "flux", "g,r,z"),
        (["cube2"], "flux", "g,i"),
        (["ext"], "flux", "unknown"),
        (["p"], "rgb_composite", "z,r,g"),
    ]
    f2d, cube_img = batches[0].images[0], batches[1].images[0]
    assert f2d.dtype == np.float32 and f2d.shape == (16, 12, 1)
    np.testing.assert_allclose(f2d[:, :, 0], plane)
    assert cube_img.shape == (16, 12, 3) and cube_img.dtype == np.float32
    np.testing.assert_allclose(cube_img[:, :, 2], cube[2], rtol=1e-6)
    assert batches[2].images[0].shape == (16, 12, 2)


def test_real_ring_galaxies(shared_dir: Path) -> None:
    root = shared_dir / "gz_decals_rings"
    src = FolderSource(root, label_column="ring")
    src.validate()
    assert len(src) == 370 and src.orphans == []
    ids, labels, shapes = [], [], set()
    for b in src.iter_batches(batch_size=128):
        assert b.image_kind == "rgb_composite" and b.bands == "z,r,g"
        ids += b.native_ids
        labels += b.labels.tolist()
        shapes |= {(im.shape, im.dtype.str) for im in b.images}
        assert set(b.extra[0]) == {"smooth-or-featured_featured-or-disk_fraction", "disk-edge-on_no_fraction",
                                   "has-spiral-arms_no_fraction"}
        assert all(isinstance(v, float) for v in b.extra[0].values())
    with open(root / "catalog.csv") as fh:
        assert ids == [row["id"] for row in csv.DictReader(fh)]
    assert labels.count(1) == 185 and labels.count(0) == 185
    assert shapes == {((256, 256, 3), "|u1")}


# -- bad input: each error names the file and the row / id ------------------------------------------


def _invalid(src: FolderSource, match: str) -> str:
    with pytest.raises(InputError, match=match) as info:
        src.validate()
    return str(info.value)


def test_missing_catalogue(tmp_path: Path) -> None:
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    _invalid(FolderSource(tmp_path), "no CSV catalogues found")
    msg = _invalid(FolderSource(tmp_path, catalog=tmp_path / "nope.csv"), "catalogue not found")
    assert "nope.csv" in msg


def test_not_a_directory(tmp_path: Path) -> None:
    _invalid(FolderSource(tmp_path / "missing"), "not a directory")


def test_missing_required_column(folder) -> None:
    root, _ = folder
    write_catalog(root / "catalog.csv", [[r[1], r[2]] for r in ROWS], header=["ra", "dec"])
    msg = _invalid(FolderSource(root), "missing column")
    assert "'id'" in msg and "catalog.csv" in msg and "columns present: ra, dec" in msg
    _invalid(FolderSource(root, label_column="morph"), "'id', 'morph'")


def test_one_position_column_without_the_other_is_refused(folder) -> None:
    root, _ = folder
    write_catalog(root / "catalog.csv", [[r[0], r[1]] for r in ROWS], header=["id", "ra"])
    msg = _invalid(FolderSource(root), "column 'ra' is there but 'dec' is not")
    assert "catalog.csv" in msg


def test_catalogue_without_positions_gives_nan_positions(folder) -> None:
    """Ids and pixels only (Galaxy Zoo's Kaggle images, GZ1 cut-outs): every position NaN, said once."""
    root, images = folder
    write_catalog(root / "catalog.csv", [[r[0], r[3]] for r in ROWS], header=["id", "ring"])
    src = FolderSource(root, label_column="ring")
    with pytest.warns(UserWarning, match="has no 'ra' / 'dec' columns.*POSITION_UNKNOWN"):
        src.validate()
    ra, dec = src.positions()
    assert np.isnan(ra).all() and np.isnan(dec).all()
    (batch,) = _batches(src)
    assert np.isnan(batch.ra).all() and np.isnan(batch.dec).all()
    assert batch.labels.tolist() == [1, 0, -1, 1] and np.array_equal(batch.images[0], images["g1"])


def test_some_empty_positions_are_unknown_per_row(folder) -> None:
    """A row with both cells empty is that galaxy's position unknown (NaN); the others keep theirs."""
    root, _ = folder
    rows = [list(r) for r in ROWS]
    rows[1][1] = rows[1][2] = ""
    write_catalog(root / "catalog.csv", rows)
    src = FolderSource(root)
    with pytest.warns(UserWarning, match="leaves 1 of 4 positions empty"):
        src.validate()
    ra, dec = src.positions()
    assert np.isnan(ra[1]) and np.isnan(dec[1])
    assert ra[[0, 2, 3]].tolist() == [10.5, 12.0, 13.0] and dec[[0, 2, 3]].tolist() == [-1.25, 3.0, 4.0]
    rows[3][1] = "361"  # a known position out of range is still refused, with unknown ones beside it
    write_catalog(root / "catalog.csv", rows)
    _invalid(FolderSource(root), r"'ra' is 361.0 \(outside \[0, 360\) degrees\) in row 3 \(id 'g4'\)")


def test_duplicate_ids_name_both_rows(folder) -> None:
    root, _ = folder
    write_catalog(root / "catalog.csv", [*ROWS, ["g2", "1", "1", "0", "0", ""]])
    msg = _invalid(FolderSource(root), r"duplicate id 'g2' in rows 1 and 4")
    assert str(root / "catalog.csv") in msg


@pytest.mark.parametrize(("col", "value", "shown"), [(1, "nan", "'nan'"), (2, "", "empty"), (1, "12h30m", "'12h30m'")])
def test_bad_position_names_the_row(folder, col: int, value: str, shown: str) -> None:
    root, _ = folder
    rows = [list(r) for r in ROWS]
    rows[2][col] = value
    write_catalog(root / "catalog.csv", rows)
    name = "ra" if col == 1 else "dec"
    msg = _invalid(FolderSource(root), f"'{name}' is {shown} .* in row 2 \\(id 'g3'\\)")
    assert "catalog.csv" in msg


@pytest.mark.parametrize(("col", "value", "span"), [(2, "91", r"\[-90, 90\]"), (2, "-100", r"\[-90, 90\]"),
                                                    (1, "400", r"\[0, 360\)"), (1, "-0.5", r"\[0, 360\)")])
def test_position_out_of_range_names_the_row(folder, col: int, value: str, span: str) -> None:
    root, _ = folder
    rows = [list(r) for r in ROWS]
    rows[0][col] = value
    write_catalog(root / "catalog.csv", rows)
    name = "ra" if col == 1 else "dec"
    _invalid(FolderSource(root), rf"'{name}' is {float(value)} \(outside {span} degrees\) in row 0 \(id 'g1'\)")


@pytest.mark.parametrize("pxscale", [-1.0, 0.0, float("nan"), float("inf"), "abc"])
def test_bad_pixel_scale_is_refused(folder, pxscale) -> None:
    root, _ = folder
    with pytest.raises(InputError, match="pixel scale"):
        FolderSource(root, pxscale=pxscale)
    assert np.isnan(FolderSource(root, pxscale=None).pxscale)  # None: unknown, said so


def test_bad_pixel_scale_in_the_catalogue_names_the_row(folder) -> None:
    root, _ = folder
    write_catalog(root / "catalog.csv", [[*r[:3], "-0.3" if r[0] == "g2" else "0.262"] for r in ROWS],
                  header=["id", "ra", "dec", "pxscale"])
    _invalid(FolderSource(root), r"'pxscale' is -0.3 in row 1 \(id 'g2'\)")


def test_oversize_image_is_refused_before_decoding(folder) -> None:
    root, _ = folder
    Image.fromarray(np.zeros((1025, 64, 3), np.uint8)).save(root / "images" / "g2.png")
    msg = _invalid(FolderSource(root), r"g2.png: image is 1025 x 64 pixels, larger than the 1024 px per side")
    assert "catalog" not in msg
    small = FolderSource(root, max_side=2048)
    small.validate()  # the limit is a parameter
    assert [b.images[0].shape for b in small.iter_batches(1, 2)] == [(1025, 64, 3)]
    with pytest.raises(InputError, match="larger than the 1024 px"):
        list(FolderSource(root).iter_batches(1, 2))  # a shard run checks too, without validate()


def test_wrong_number_of_fields(folder) -> None:
    root, _ = folder
    write_catalog(root / "catalog.csv", [*ROWS[:2], ["g3", "1"], ROWS[3]])
    _invalid(FolderSource(root), "row 2 has 2 fields, the header has 6")


def test_catalogue_names_a_missing_image(folder) -> None:
    root, _ = folder
    (root / "images" / "g3.png").unlink()
    msg = _invalid(FolderSource(root), r"row 2 \(id 'g3'\) names an image that does not exist")
    assert str(root / "images" / "g3") + ".png" in msg and "catalog.csv" in msg


def test_images_without_catalogue_row_warn_or_fail_when_strict(folder) -> None:
    root, _ = folder
    Image.fromarray(_rgb()).save(root / "images" / "stray.png")
    src = FolderSource(root)
    with pytest.warns(UserWarning, match=r"1 image\(s\) have no row .* stray.png"):
        src.validate()
    assert [p.name for p in src.orphans] == ["stray.png"]
    assert len(src) == 4
    _invalid(FolderSource(root, strict=True), "stray.png")


def test_two_images_for_one_id(folder) -> None:
    root, _ = folder
    fits.PrimaryHDU(np.zeros((4, 4), np.float32)).writeto(root / "images" / "g1.fits")
    _invalid(FolderSource(root), "two images for id 'g1': g1.fits and g1.png")


def test_unreadable_image_header_names_the_file(folder) -> None:
    root, _ = folder
    (root / "images" / "g2.png").write_bytes(b"this is not a png" * 10)
    msg = _invalid(FolderSource(root), "unreadable image file")
    assert str(root / "images" / "g2.png") in msg


def test_corrupt_fits_names_the_file(folder) -> None:
    root, _ = folder
    (root / "images" / "g2.png").unlink()
    (root / "images" / "g2.fits").write_bytes(b"SIMPLE  = garbage" * 20)
    msg = _invalid(FolderSource(root), "unreadable FITS file")
    assert str(root / "images" / "g2.fits") in msg


def test_truncated_image_passes_validate_but_fails_decoding_with_its_name(folder) -> None:
    root, _ = folder
    p = root / "images" / "g2.png"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    src = FolderSource(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        src.validate()  # only the header is read
    with pytest.raises(InputError, match="unreadable image file") as info:
        _batches(src)
    assert str(p) in str(info.value)


def test_sixteen_bit_png_is_refused(folder) -> None:
    root, _ = folder
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(root / "images" / "g1.png")
    _invalid(FolderSource(root), "is not 8-bit colour or grey")


def test_fractional_label_is_refused(folder) -> None:
    root, _ = folder
    _invalid(FolderSource(root, label_column="score"), "label column 'score' is 0.75 in row 0")
