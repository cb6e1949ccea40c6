"""Named sources: two folders or two HDF5 files are two sources; a name is refused for other data unless
replaced; ids and shard keys carry the name. Real Lance, real Dagster runs, real ring galaxies."""

from __future__ import annotations

import shutil

import h5py
import pyarrow as pa
import pytest
from conftest import copy_rings, write_galaxy10_h5

from dagster_project.runner import run_pipeline
from features.errors import InputError
from features.sources import check_source_name, make_source, name_from_path
from features.sources.folder import FolderSource
from features.sources.galaxy10 import Galaxy10Source
from stages.sources import register_source, registered_source, source_for_shard


def _run(wh, shards):
    return run_pipeline(wh, shards, groups=["ingest"], progress=False, log=lambda m: None)


def _ingest_h5(wh, path, name=None, shard_size=10, replace=False):
    source = Galaxy10Source(path)
    source.name = name
    shards = register_source(wh, source, path=str(path), shard_size=shard_size, replace=replace)
    return shards, _run(wh, shards)


def test_default_names_and_the_name_rules(tmp_path):
    folder = tmp_path / "GZ-DECaLS rings"
    folder.mkdir()
    assert FolderSource(folder).name == "gz_decals_rings"
    assert name_from_path(tmp_path / "+++", "folder") == "folder"
    assert Galaxy10Source(tmp_path / "x.h5").name == "galaxy10"
    assert make_source("demo", n=3).name == "demo"
    assert make_source("demo", n=3, name="demo_b.2").name == "demo_b.2"
    for bad in ("Rings", "a-b", "a:b", "", "_a", "a b", "x" * 65):
        with pytest.raises(InputError, match="invalid source name"):
            check_source_name(bad)
    with pytest.raises(InputError, match="invalid source name"):
        make_source("folder", path=str(folder), name="My-Rings")


def test_two_folders_in_sequence_are_two_sources(warehouse, shared_dir, tmp_path):
    """The reported bug: both folders landed in one shard ``folder-00000`` and ``sources`` described only
    the second. Now each has its name, its shards and its row in ``sources``, and every check passes."""
    a = copy_rings(shared_dir, tmp_path / "rings_a", 0, 12)
    b = copy_rings(shared_dir, tmp_path / "rings_b", 12, 20)
    for folder in (a, b):
        shards = register_source(warehouse, FolderSource(folder, pxscale=None), path=str(folder), shard_size=8)
        report = _run(warehouse, shards)
        assert report.ok, report.failed
        assert not report.checks_failed
    per_shard = warehouse.sql("SELECT shard, source, count(*) AS n FROM galaxies GROUP BY 1, 2 ORDER BY 1")
    assert per_shard.rows() == [("rings_a-00000", "rings_a", 8), ("rings_a-00001", "rings_a", 4),
                                ("rings_b-00000", "rings_b", 8)]
    sources = warehouse.sql("SELECT source, kind, path, n_galaxies FROM sources ORDER BY 1").rows()
    assert sources == [("rings_a", "folder", str(a.resolve()), 12), ("rings_b", "folder", str(b.resolve()), 8)]
    assert warehouse.count("images") == 20
    first_b = (b / "catalog.csv").read_text().splitlines()[1].split(",")[0]
    assert warehouse.read_image(f"rings_b:{first_b}").shape == (256, 256, 3)
    source, start, stop = source_for_shard(warehouse, "rings_a-00001")
    assert (source.name, source.kind, start, stop) == ("rings_a", "folder", 8, 12)


def test_second_galaxy10_file_is_refused_unless_named(warehouse, galaxy10_h5, tmp_path):
    """The default name of every Galaxy10 file is ``galaxy10``: a second file must not overwrite the
    first one's rows (ids are row numbers)."""
    _, report = _ingest_h5(warehouse, galaxy10_h5)
    assert report.ok
    first = warehouse.read("galaxies", columns=["galaxy_id", "ra"]).sort_by("galaxy_id")
    (tmp_path / "other").mkdir()
    other = write_galaxy10_h5(tmp_path / "other" / "Galaxy10_DECals.h5", n=4, seed=3)
    with h5py.File(other, "r+") as f:
        f["ra"][...] = 200.0 + f["ra"][()]
    before = warehouse.versions()
    with pytest.raises(InputError, match=r"already registered .* --name NAME, or pass --replace") as info:
        register_source(warehouse, Galaxy10Source(other), path=str(other), shard_size=10)
    assert "path" in str(info.value) and "content checksum differs" in str(info.value)
    assert warehouse.versions() == before

    shards, report = _ingest_h5(warehouse, other, name="galaxy10_b")
    assert shards == ["galaxy10_b-00000"] and report.ok and not report.checks_failed
    again = warehouse.read("galaxies", columns=["galaxy_id", "ra"], where="source = 'galaxy10'").sort_by("galaxy_id")
    assert again.equals(first)  # the first file's rows are untouched
    ids = sorted(warehouse.read("galaxies", columns=["galaxy_id"], where="source = 'galaxy10_b'")
                 .column("galaxy_id").to_pylist())
    assert ids == [f"galaxy10_b:{i:05d}" for i in range(4)]


def test_reingest_is_idempotent_and_other_data_under_the_name_is_refused(warehouse, galaxy10_h5, tmp_path):
    _ingest_h5(warehouse, galaxy10_h5)
    fingerprint = registered_source(warehouse, "galaxy10")["fingerprint"]
    assert register_source(warehouse, Galaxy10Source(galaxy10_h5), path=str(galaxy10_h5), shard_size=10)
    assert registered_source(warehouse, "galaxy10")["fingerprint"] == fingerprint
    copy = tmp_path / "copy.h5"
    shutil.copy(galaxy10_h5, copy)  # same content, another file
    with pytest.raises(InputError, match=r"path .* -> .*copy\.h5"):
        register_source(warehouse, Galaxy10Source(copy), path=str(copy), shard_size=10)
    with h5py.File(galaxy10_h5, "r+") as f:  # same file, changed catalogue
        f["dec"][0] = 3.5
    with pytest.raises(InputError, match="content checksum differs"):
        register_source(warehouse, Galaxy10Source(galaxy10_h5), path=str(galaxy10_h5), shard_size=10)
    assert warehouse.count("galaxies") == 10


def test_replace_deletes_the_old_rows_from_every_per_galaxy_table(warehouse, galaxy10_h5, tmp_path):
    _ingest_h5(warehouse, galaxy10_h5)
    _ingest_h5(warehouse, write_galaxy10_h5(tmp_path / "keep.h5", n=3, seed=1), name="keep")
    warehouse.upsert("splits", [dict(galaxy_id=g, split_name="s", split="train", label_column="label", label=0,
                                     label_name=None, seed=0, duplicate_group=None)
                                for g in ("galaxy10:00001", "galaxy10:00009", "keep:00000")])
    smaller = write_galaxy10_h5(tmp_path / "smaller.h5", n=4, seed=2)
    shards, report = _ingest_h5(warehouse, smaller, shard_size=2, replace=True)
    assert shards == ["galaxy10-00000", "galaxy10-00001"] and report.ok and not report.checks_failed
    for table in ("galaxies", "images"):
        ids = sorted(warehouse.read(table, columns=["galaxy_id"]).column("galaxy_id").to_pylist())
        assert ids == [f"galaxy10:{i:05d}" for i in range(4)] + [f"keep:{i:05d}" for i in range(3)]
    assert warehouse.read("splits", columns=["galaxy_id"]).column("galaxy_id").to_pylist() == ["keep:00000"]
    row = registered_source(warehouse, "galaxy10")
    assert (row["path"], row["n_galaxies"], row["shard_size"]) == (str(smaller.resolve()), 4, 2)


def test_a_shard_that_lost_or_gained_rows_fails_its_step(warehouse, galaxy10_h5):
    """``rows_per_shard`` and ``unique_ids`` are blocking: the run (and the CLI's status) fails."""
    shards, report = _ingest_h5(warehouse, galaxy10_h5)
    stray = warehouse.read("galaxies", where="galaxy_id = 'galaxy10:00000'").drop_columns(
        ["code_version", "run_id", "written_at"])
    warehouse.upsert("galaxies", stray.set_column(0, "galaxy_id", pa.array(["galaxy10:99999"])))
    report = _run(warehouse, shards)
    assert not report.ok
    assert "galaxies (shard galaxy10-00000)" in report.failed
    assert any("rows_per_shard" in c for c in report.checks_failed)


def test_demo_truth_rows_carry_the_source_name():
    survey = make_source("demo", n=3, size=32, name="demo_b")
    truth = survey.truth_table(1, 3)
    assert truth.column("galaxy_id").to_pylist() == ["demo_b:000001", "demo_b:000002"]
    assert next(survey.iter_batches(1, 3, workers=1)).galaxy_ids == ["demo_b:000001", "demo_b:000002"]


def test_folder_fingerprint_sees_catalogue_and_image_changes(shared_dir, tmp_path):
    folder = copy_rings(shared_dir, tmp_path / "r", 0, 3)
    fp = FolderSource(folder).fingerprint()
    assert FolderSource(folder, label_column="ring").fingerprint() == fp  # how it is read is not what it is
    image = next((folder / "images").iterdir())
    image.write_bytes(image.read_bytes() + b"\0")
    assert FolderSource(folder).fingerprint() != fp
