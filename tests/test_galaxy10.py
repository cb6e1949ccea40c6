"""Galaxy10 DECaLS source on tiny files with the real keys and dtypes, and every kind of bad file."""

from __future__ import annotations

import socket
from pathlib import Path

import h5py
import numpy as np
import pytest

from features.errors import InputError, OfflineError
from features.sources.classes import GALAXY10_CLASSES
from features.sources.galaxy10 import GALAXY10_BANDS, Galaxy10Source, download

N = 12


def _columns(n: int = N) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    return {
        "images": rng.integers(0, 256, (n, 256, 256, 3), dtype=np.uint8),
        "ans": (np.arange(n) % 10).astype(np.uint8),
        "ra": rng.uniform(0, 360, n),
        "dec": rng.uniform(-30, 30, n),
        "redshift": rng.uniform(0.01, 0.2, n),
        "pxscale": np.full(n, 0.262),
    }


def write_galaxy10(path: Path, columns: dict[str, np.ndarray] | None = None, **h5_kwargs) -> Path:
    """Write a Galaxy10_DECals.h5 with the real keys (``h5_kwargs`` go to the ``images`` dataset)."""
    columns = _columns() if columns is None else columns
    with h5py.File(path, "w") as f:
        for key, value in columns.items():
            if key == "images":
                f.create_dataset(key, data=value, **h5_kwargs)
            else:
                f.create_dataset(key, data=value)
    return path


@pytest.fixture
def g10_file(tmp_path: Path) -> Path:
    return write_galaxy10(tmp_path / "Galaxy10_DECals.h5")


def _all(source: Galaxy10Source, **kw) -> list:
    return list(source.iter_batches(**kw))


def test_reads_every_row_with_labels_names_and_bands(g10_file: Path) -> None:
    cols = _columns()
    src = Galaxy10Source(g10_file, chunk_size=5)
    src.validate()
    assert len(src) == N and src.name == "galaxy10" and src.default_shard_size == 1000
    batches = _all(src, batch_size=4)
    assert [len(b) for b in batches] == [4, 1, 4, 1, 2]  # batches never straddle a 5-row chunk
    ids = [g for b in batches for g in b.galaxy_ids]
    assert ids == [f"galaxy10:{i:05d}" for i in range(N)]
    images = np.stack([im for b in batches for im in b.images])
    np.testing.assert_array_equal(images, cols["images"])
    labels = np.concatenate([b.labels for b in batches])
    np.testing.assert_array_equal(labels, cols["ans"])
    assert [n for b in batches for n in b.label_names] == [GALAXY10_CLASSES[i % 10] for i in range(N)]
    np.testing.assert_allclose(np.concatenate([b.ra for b in batches]), cols["ra"])
    np.testing.assert_allclose(np.concatenate([b.pxscale for b in batches]), 0.262)
    b = batches[0]
    assert b.image_kind == "rgb_composite" and b.bands == GALAXY10_BANDS == "z,r,g"
    assert b.images[0].dtype == np.uint8 and b.images[0].shape == (256, 256, 3)
    assert b.row_index.dtype == np.int64


def test_row_range_reads_only_its_rows(g10_file: Path) -> None:
    batches = _all(Galaxy10Source(g10_file, chunk_size=256), start=3, stop=8, batch_size=64)
    assert [r for b in batches for r in b.row_index] == [3, 4, 5, 6, 7]
    np.testing.assert_array_equal(batches[0].images[0], _columns()["images"][3])
    assert _all(Galaxy10Source(g10_file), start=20, stop=30) == []
    assert Galaxy10Source(g10_file).describe()["path"] == str(g10_file)


def test_bad_pxscale_becomes_nan(tmp_path: Path) -> None:
    cols = _columns()
    cols["pxscale"][2] = 0.0
    cols["pxscale"][3] = np.nan
    src = Galaxy10Source(write_galaxy10(tmp_path / "g.h5", cols))
    src.validate()
    px = next(src.iter_batches()).pxscale
    assert np.isnan(px[2]) and np.isnan(px[3]) and px[0] == pytest.approx(0.262)


# -- bad input: each error names the file (and key / row) -------------------------------------------


def _raises(path: Path, match: str) -> str:
    with pytest.raises(InputError, match=match) as info:
        Galaxy10Source(path).validate()
    assert str(path) in str(info.value)
    return str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    _raises(tmp_path / "nope.h5", "file not found")
    with pytest.raises(InputError, match="not found"):
        len(Galaxy10Source(tmp_path / "nope.h5"))


def test_truncated_file(g10_file: Path) -> None:
    data = g10_file.read_bytes()
    g10_file.write_bytes(data[: len(data) // 2])
    _raises(g10_file, "truncated")


def test_corrupt_file_not_hdf5(tmp_path: Path) -> None:
    p = tmp_path / "Galaxy10_DECals.h5"
    p.write_bytes(b"<html>rate limited</html>" * 100)
    _raises(p, "not an HDF5 file")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    _raises(tmp_path, "is a directory")


@pytest.mark.parametrize("key", ["images", "ans", "ra", "dec", "redshift", "pxscale"])
def test_missing_key(tmp_path: Path, key: str) -> None:
    cols = _columns()
    del cols[key]
    msg = _raises(write_galaxy10(tmp_path / "g.h5", cols), f"missing key '{key}'")
    assert "keys present" in msg


def test_wrong_image_dtype(tmp_path: Path) -> None:
    cols = _columns()
    cols["images"] = cols["images"].astype(np.float32)
    _raises(write_galaxy10(tmp_path / "g.h5", cols), "'images' has dtype float32, expected uint8")


def test_wrong_image_shape(tmp_path: Path) -> None:
    cols = _columns()
    cols["images"] = cols["images"][:, :64, :64, :]
    _raises(write_galaxy10(tmp_path / "g.h5", cols), r"'images' has shape \(12, 64, 64, 3\)")


def test_wrong_column_dtype(tmp_path: Path) -> None:
    cols = _columns()
    cols["ans"] = cols["ans"].astype(np.float64)
    _raises(write_galaxy10(tmp_path / "g.h5", cols), "'ans' has dtype float64")


def test_column_length_mismatch(tmp_path: Path) -> None:
    cols = _columns()
    cols["dec"] = cols["dec"][:-1]
    _raises(write_galaxy10(tmp_path / "g.h5", cols), r"'dec' has shape \(11,\), expected \(12,\)")


@pytest.mark.parametrize("key", ["ra", "dec"])
def test_nan_position_names_the_row(tmp_path: Path, key: str) -> None:
    cols = _columns()
    cols[key][7] = np.nan
    _raises(write_galaxy10(tmp_path / "g.h5", cols), rf"'{key}' is nan \(not a finite number\) in row 7")


def test_label_out_of_range_names_the_row(tmp_path: Path) -> None:
    cols = _columns()
    cols["ans"][4] = 10
    _raises(write_galaxy10(tmp_path / "g.h5", cols), "'ans' row 4 is 10")


@pytest.mark.parametrize(("key", "value", "span"), [("dec", 95.0, r"\[-90, 90\]"), ("ra", 400.0, r"\[0, 360\)"),
                                                    ("ra", -1.0, r"\[0, 360\)"), ("ra", 360.0, r"\[0, 360\)")])
def test_position_out_of_range_names_the_row(tmp_path: Path, key: str, value: float, span: str) -> None:
    cols = _columns()
    cols[key][1] = value
    _raises(write_galaxy10(tmp_path / "g.h5", cols), rf"'{key}' is {value} \(outside {span} degrees\) in row 1")


def test_corrupt_image_chunk_is_reported_while_reading(tmp_path: Path) -> None:
    """A damaged compressed chunk passes validate() (no pixels read) but iterating names file and rows."""
    path = write_galaxy10(tmp_path / "g.h5", chunks=(4, 256, 256, 3), compression="gzip")
    with h5py.File(path, "r") as f:
        info = f["images"].id.get_chunk_info(1)  # rows 4-7
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + 10)
        fh.write(b"\x00garbage\xff" * 50)
    src = Galaxy10Source(path, chunk_size=4)
    src.validate()
    with pytest.raises(InputError, match=r"cannot read 'images' rows 4-7") as err:
        _all(src, batch_size=4)
    assert str(path) in str(err.value)


def test_download_offline_says_where_to_put_the_file(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OfflineError) as info:
        download(tmp_path, url=f"http://127.0.0.1:{port}/Galaxy10_DECals.h5", timeout=2, progress=False)
    msg = str(info.value)
    assert str(tmp_path / "Galaxy10_DECals.h5") in msg
    assert "astrovision ingest --source galaxy10 --path FILE" in msg
