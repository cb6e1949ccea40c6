"""Ingest through real Dagster runs: two shards in process, idempotence, duplicates, bad input."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import h5py
import pytest

from dagster_project.runner import instance_for, run_pipeline
from features.errors import InputError
from features.flags import Flag
from features.sources.galaxy10 import Galaxy10Source
from stages.sources import register_source

SHARED_RINGS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "gz_decals_rings"


def test_definitions_load():
    from dagster_project.definitions import defs

    keys = {a.key.to_user_string() for a in defs.assets}
    assert {"galaxies", "duplicate_groups"} <= keys
    defs.resolve_all_job_defs()


def ingest(wh, path, shard_size=5):
    shards = register_source(wh, Galaxy10Source(path), path=str(path), shard_size=shard_size)
    report = run_pipeline(wh, shards, groups=["ingest"], progress=False, log=lambda m: None)
    return shards, report


def test_two_shards_materialize_and_rerun_is_idempotent(warehouse, galaxy10_h5):
    shards, report = ingest(warehouse, galaxy10_h5)
    assert shards == ["galaxy10-00000", "galaxy10-00001"]
    assert report.ok, report.failed
    assert not report.checks_failed
    assert {"galaxies[galaxy10-00000]", "galaxies[galaxy10-00001]", "duplicate_groups"} <= set(report.succeeded)
    rows = warehouse.sql("SELECT galaxy_id, label, label_name, duplicate_group, flags FROM galaxies ORDER BY 1")
    assert rows.height == 10
    assert rows["label_name"][2] == "Round Smooth"
    groups = dict(zip(rows["galaxy_id"], rows["duplicate_group"]))
    assert groups["galaxy10:00003"] is not None
    assert groups["galaxy10:00003"] == groups["galaxy10:00007"]
    assert sum(g is not None for g in groups.values()) == 2
    flags = dict(zip(rows["galaxy_id"], rows["flags"]))
    assert flags["galaxy10:00007"] & Flag.IMAGE_DUPLICATE
    assert warehouse.read_image("galaxy10:00004").shape == (256, 256, 3)

    before = warehouse.versions()
    _, again = ingest(warehouse, galaxy10_h5)
    assert again.ok
    after = warehouse.sql("SELECT galaxy_id, label, duplicate_group FROM galaxies ORDER BY 1")
    assert after.height == 10
    assert after["duplicate_group"].to_list() == rows["duplicate_group"].to_list()
    assert warehouse.versions()["galaxies"] > before["galaxies"]

    # the runs are in the instance under the warehouse root, so the UI shows them
    instance = instance_for(warehouse)
    runs = instance.get_runs()
    assert len(runs) == 6  # per ingest: one run per shard, then duplicate_groups
    assert {r.job_name for r in runs} == {"ingest_job"}  # named in the UI's run list
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert set(instance.get_dynamic_partitions("shards")) == set(shards)


def test_materialization_metadata_and_checks(warehouse, galaxy10_h5):
    _, report = ingest(warehouse, galaxy10_h5, shard_size=10)
    from stages.ingest import DuplicateGroupsResult, IngestResult

    meta = IngestResult.from_metadata(report.metadata["galaxies[galaxy10-00000]"])  # the class owns the keys
    assert meta.rows == 10 and meta.source == "galaxy10" and meta.source_kind == "galaxy10"
    assert meta.image_bytes_per_galaxy > 0 and meta.row_range == "[0, 10)"
    assert meta.expected_rows == 0  # check-only fields are not metadata
    assert meta.table_versions["galaxies"] >= 1
    groups = DuplicateGroupsResult.from_metadata(report.metadata["duplicate_groups"])
    assert groups.galaxies == sum(1 for k in report.metadata if k.startswith("galaxies[")) * 10


def test_blank_image_is_flagged_and_check_fails(warehouse, tmp_path):
    from conftest import write_galaxy10_h5

    path = write_galaxy10_h5(tmp_path / "g.h5", n=4)
    with h5py.File(path, "r+") as f:
        f["images"][1] = 0
    _, report = ingest(warehouse, path, shard_size=4)
    assert report.ok
    flags = warehouse.sql("SELECT flags FROM galaxies WHERE galaxy_id = 'galaxy10:00001'")["flags"][0]
    assert flags & Flag.IMAGE_BLANK
    assert any("blank_images" in c for c in report.checks_failed)


@pytest.mark.parametrize("damage", ["truncate", "wrong_key", "nan_ra"])
def test_bad_file_leaves_warehouse_unchanged(warehouse, galaxy10_h5, tmp_path, damage):
    from conftest import write_galaxy10_h5

    ingest(warehouse, galaxy10_h5)
    before = warehouse.versions()
    bad = write_galaxy10_h5(tmp_path / f"{damage}.h5", n=4)
    if damage == "truncate":
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) // 3])
    elif damage == "wrong_key":
        with h5py.File(bad, "r+") as f:
            f["labels"] = f["ans"][()]
            del f["ans"]
    else:
        with h5py.File(bad, "r+") as f:
            f["ra"][2] = float("nan")
    with pytest.raises(InputError, match=str(bad.name)):
        register_source(warehouse, Galaxy10Source(bad), path=str(bad), shard_size=5)
    assert warehouse.versions() == before


def test_shard_size_must_match_existing_source(warehouse, galaxy10_h5):
    ingest(warehouse, galaxy10_h5, shard_size=5)
    with pytest.raises(InputError, match="shard size"):
        register_source(warehouse, Galaxy10Source(galaxy10_h5), path=str(galaxy10_h5), shard_size=3)


def test_folder_of_370_real_galaxies_through_dagster(warehouse, shared_dir):
    from features.sources.folder import FolderSource

    folder = shared_dir / "gz_decals_rings"
    source = FolderSource(folder, label_column="ring", pxscale=None)
    shards = register_source(warehouse, source, path=str(folder), shard_size=200,
                             params={"label_column": "ring", "pxscale": None})
    assert shards == ["gz_decals_rings-00000", "gz_decals_rings-00001"]  # named after the directory
    report = run_pipeline(warehouse, shards, groups=["ingest"], progress=False, log=lambda m: None)
    assert report.ok, report.failed
    counts = warehouse.sql("SELECT label, count(*) AS n FROM galaxies GROUP BY 1 ORDER BY 1")
    assert counts["n"].to_list() == [185, 185]
    one = warehouse.sql("SELECT galaxy_id, pxscale, label_name, extra_json FROM galaxies "
                        "WHERE galaxy_id = 'gz_decals_rings:J000411.19+020924.0'").to_dicts()[0]
    assert one["pxscale"] is None  # resampled cutouts: unknown scale, stated as such
    assert one["label_name"].startswith("ring")
    assert "smooth-or-featured_featured-or-disk_fraction" in one["extra_json"]  # other columns kept
    assert warehouse.read_image("gz_decals_rings:J000411.19+020924.0").shape == (256, 256, 3)


def test_runner_goes_on_past_a_failed_feature_step_and_names_the_user_error(warehouse):
    """A shard's failed step (e.g. photometry offline) is reported by the project's own message, and the
    unpartitioned assets still run; only a failed ``galaxies`` step stops the run."""
    from dagster_project.partitions import SHARDS

    @dg.asset(partitions_def=SHARDS)
    def upstream() -> None:
        return None

    @dg.asset(partitions_def=SHARDS, deps=[upstream])
    def flaky() -> None:
        try:
            raise ConnectionError("low-level DNS failure with a very long URL")
        except ConnectionError as exc:
            raise InputError("the service is unreachable; use a catalogue file instead") from exc

    @dg.asset(deps=[upstream])
    def downstream() -> None:
        return None

    defs = dg.Definitions(assets=[upstream, flaky, downstream], jobs=[dg.define_asset_job("pipeline_job")])
    messages: list[str] = []
    report = run_pipeline(warehouse, ["t-00000", "t-00001"], defs=defs, progress=False, log=messages.append)
    assert set(report.failed) == {"flaky (shard t-00000)", "flaky (shard t-00001)"}
    assert all(m.endswith("use a catalogue file instead") for m in report.failed.values())
    assert "downstream" in report.succeeded
    assert len(messages) == 2


def test_unreadable_image_mid_shard_leaves_every_table_as_it_was(warehouse, tmp_path, galaxy10_h5):
    """A truncated PNG passes the cheap header validation; the shard fails when it is decoded, before
    anything of that shard is written."""
    import shutil

    from features.sources.folder import FolderSource

    ingest(warehouse, galaxy10_h5)
    real = sorted((SHARED_RINGS / "images").glob("*.png"))[:6]
    folder = tmp_path / "folder"
    (folder / "images").mkdir(parents=True)
    rows = ["id,ra,dec"]
    for i, src in enumerate(real):
        shutil.copy(src, folder / "images" / src.name)
        rows.append(f"{src.stem},{10 + i},{1 + i}")
    (folder / "catalog.csv").write_text("\n".join(rows) + "\n")
    bad = folder / "images" / real[4].name
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    before = warehouse.versions()
    shards = register_source(warehouse, FolderSource(folder), path=str(folder))
    report = run_pipeline(warehouse, shards, groups=["ingest"], progress=False, log=lambda m: None)
    assert not report.ok
    assert any(real[4].name in msg for msg in report.failed.values())
    after = warehouse.versions()
    assert after.pop("sources") == before.pop("sources") + 1  # the attempt is registered, nothing else
    assert after == before
