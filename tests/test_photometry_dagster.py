"""The ``photometry`` asset materialized on a tiny warehouse (catalogue file registered on the source)."""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from dagster_project.defs.photometry.assets import photometry
from dagster_project.resources import WarehouseResource
from features.flags import Flag
from features.photometry import CANONICAL
from stages.photometry import ShardPhotometry

SHARD = "demo-00000"


def _galaxies(n: int = 6) -> list[dict]:
    return [
        dict(galaxy_id=f"demo:{i:06d}", source="demo", native_id=f"{i:06d}", shard=SHARD, row_index=i,
             ra=180.0 + 0.01 * i, dec=1.0, redshift=0.05 if i == 0 else None, pxscale=0.262, label=i % 10,
             label_name=None, extra_json=None, image_sha1=f"{i:040x}", duplicate_group=None, flags=0)
        for i in range(n)
    ]


def _catalogue(path, n_match: int = 5) -> None:
    """Objects 0.4" north of the first ``n_match`` galaxies, with plausible galaxy colours."""
    rng = np.random.default_rng(7)
    cols = {c: np.full(n_match, np.nan) for c in CANONICAL}
    cols["objid"] = np.arange(1000, 1000 + n_match)
    cols["ra"] = 180.0 + 0.01 * np.arange(n_match)
    cols["dec"] = 1.0 + 0.4 / 3600
    cols["type"] = np.full(n_match, 3)
    cols["clean"] = np.ones(n_match, int)
    r = rng.uniform(15, 17, n_match)
    for b, off in zip("ugriz", [1.8, 0.7, 0.0, -0.35, -0.6]):
        cols[f"modelMag_{b}"] = r + off
        cols[f"modelMagErr_{b}"] = np.full(n_match, 0.02)
        cols[f"extinction_{b}"] = np.full(n_match, 0.05)
        cols[f"petroMag_{b}"] = r + off + 0.1
    cols["dec"] = np.full(n_match, cols["dec"])
    pacsv.write_csv(pa.table(cols), path)


def _run(wh_root, **config) -> dg.ExecuteInProcessResult:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("shards", [SHARD])
    return dg.materialize(
        [photometry], partition_key=SHARD, instance=instance,
        resources={"warehouse": WarehouseResource(root=str(wh_root))},
        run_config={"ops": {"photometry": {"config": config}}} if config else None,
        raise_on_error=False,
    )


@pytest.fixture
def tiny(warehouse, tmp_path):
    warehouse.upsert("galaxies", _galaxies())
    _catalogue(warehouse.root / "demo_photometry.csv")
    warehouse.upsert("sources", [dict(source="demo", kind="demo", path=None, catalog=None, fingerprint="x",
                                      shard_size=6, n_galaxies=6,
                                      params_json=json.dumps({"n": 6, "photometry_catalog": "demo_photometry.csv"}))])
    return warehouse


def test_asset_materializes_from_the_source_catalogue(tiny):
    result = _run(tiny.root)
    assert result.success
    rows = tiny.read("photometry").sort_by("galaxy_id").to_pylist()
    assert len(rows) == 6 and {r["run_id"] for r in rows} == {result.run_id}
    assert [r["objid"] for r in rows] == [1000, 1001, 1002, 1003, 1004, None]
    assert rows[5]["flags"] == int(Flag.PHOT_NO_MATCH) and rows[0]["abs_mag_source"] == "catalogue_redshift"
    assert rows[0]["source"] == "catalogue:demo_photometry.csv"
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == {"match_rate", "quality_pass_rate", "colour_ranges", "available"}
    assert all(c.passed for c in checks.values())
    assert checks["match_rate"].metadata["threshold"].value == 0.5
    assert checks["match_rate"].metadata["value"].value == pytest.approx(5 / 6)
    # a second run upserts the same rows
    assert _run(tiny.root).success and tiny.count("photometry") == 6


def test_config_catalog_overrides_and_checks_fail_visibly(tiny, tmp_path):
    _catalogue(tmp_path / "one.csv", n_match=1)
    result = _run(tiny.root, catalog=str(tmp_path / "one.csv"))
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["match_rate"].passed and checks["match_rate"].metadata["value"].value == pytest.approx(1 / 6)
    assert tiny.read("photometry").column("source")[0].as_py() == "catalogue:one.csv"


def test_missing_catalogue_file_fails_and_leaves_the_table_alone(tiny):
    result = _run(tiny.root, catalog="nowhere.csv")
    assert not result.success
    assert "nowhere.csv" in str(result.all_events) and not tiny.exists("photometry")


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_required_sdss_path_fails_fast_offline(warehouse):
    warehouse.upsert("galaxies", _galaxies(2))
    result = _run(warehouse.root, sdss_base_url=f"http://127.0.0.1:{_closed_port()}", require=True)
    assert not result.success
    text = str(result.all_events)
    assert str(warehouse.cache_dir / "sdss") in text and "catalog" in text
    assert not warehouse.exists("photometry")


def _available(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "available"]
    return check


def test_offline_sdss_is_a_flagged_absence_with_a_warn_check(warehouse):
    """Offline without a catalogue: the step succeeds, every galaxy has a NaN row flagged PHOT_QUERY_FAILED
    (one without a position POSITION_UNKNOWN), and the WARN check ``available`` fails naming the cause."""
    gal = _galaxies(3)
    gal[2].update(ra=None, dec=None, flags=int(Flag.POSITION_UNKNOWN))
    warehouse.upsert("galaxies", gal)
    result = _run(warehouse.root, sdss_base_url=f"http://127.0.0.1:{_closed_port()}")
    assert result.success
    check = _available(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "unreachable" in check.metadata["reason"].value
    rows = warehouse.read("photometry").sort_by("galaxy_id").to_pylist()
    assert [r["flags"] for r in rows] == [int(Flag.PHOT_QUERY_FAILED)] * 2 + [int(Flag.POSITION_UNKNOWN)]
    assert all(r["g_r"] is None or np.isnan(r["g_r"]) for r in rows) and not any(r["quality_ok"] for r in rows)


def test_galaxies_without_positions_are_not_cross_matched(warehouse, tmp_path):
    """No position, no request: the shard needs no network (the SDSS URL is a closed port and is never
    asked), its rows carry POSITION_UNKNOWN, not PHOT_NO_MATCH, and ``require`` turns it into a failure."""
    gal = _galaxies(3)
    for g in gal:
        g.update(ra=None, dec=None, flags=int(Flag.POSITION_UNKNOWN))
    warehouse.upsert("galaxies", gal)
    url = f"http://127.0.0.1:{_closed_port()}"
    result = _run(warehouse.root, sdss_base_url=url)
    assert result.success and not _available(result).passed
    assert "sky position" in _available(result).metadata["reason"].value
    flags = warehouse.read("photometry").column("flags").to_pylist()
    assert flags == [int(Flag.POSITION_UNKNOWN)] * 3
    assert not _run(warehouse.root, sdss_base_url=url, require=True).success


def test_some_positions_unknown_match_the_rest(warehouse, tmp_path):
    cat = tmp_path / "cat.csv"
    _catalogue(cat, n_match=3)
    gal = _galaxies(4)
    gal[1].update(ra=None, dec=None, flags=int(Flag.POSITION_UNKNOWN))
    warehouse.upsert("galaxies", gal)
    result = _run(warehouse.root, catalog=str(cat))
    assert result.success and _available(result).passed
    rows = {r["galaxy_id"]: r for r in warehouse.read("photometry").to_pylist()}
    assert rows["demo:000001"]["flags"] == int(Flag.POSITION_UNKNOWN) and rows["demo:000001"]["objid"] is None
    assert rows["demo:000000"]["objid"] == 1000 and rows["demo:000002"]["objid"] == 1002
    assert rows["demo:000003"]["flags"] & int(Flag.PHOT_NO_MATCH)
    meta = result.asset_materializations_for_node("photometry")[0].metadata
    out = ShardPhotometry.from_metadata({k: v.value for k, v in meta.items()})  # the typed result owns the keys
    assert out.position_unknown == 1 and out.photometry_absent == "no"
    assert out.match_rate == pytest.approx(2 / 3)  # of the three galaxies that have a position
