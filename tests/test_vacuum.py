"""Vacuum: compaction, old versions, leftovers of a killed writer, and the versions models name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from test_warehouse import PROJECT_ROOT, galaxy_row, image_row

from warehouse import WarehouseError
from warehouse.vacuum import pin_name

WRITE_FOREVER = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2])
    from test_warehouse import image_row
    from warehouse import Warehouse
    wh = Warehouse.open(sys.argv[3])
    rng = np.random.default_rng(1)
    rows = [image_row(i, rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)) for i in range(100, 400)]
    while True:
        wh.upsert("images", rows)
    """
)


def _data_files(wh, table: str) -> tuple[set[str], set[str]]:
    """(every file in the table's data/ directory, those that some version references)."""
    uri = wh.table_uri(table)
    present = {p.name for p in (Path(uri) / "data").iterdir()}
    referenced = {f.path for v in wh.history(table) for frag in wh.dataset(table, v["version"]).get_fragments()
                  for f in frag.data_files()}
    return present, referenced


def _kill_a_writer(wh) -> set[Path]:
    """SIGKILL a process while Lance writes ``images`` (a ``data/.tmp*`` file exists); returns what it left."""
    data = Path(wh.table_uri("images")) / "data"
    proc = subprocess.Popen([sys.executable, "-c", WRITE_FOREVER, str(PROJECT_ROOT), str(Path(__file__).parent),
                             str(wh.root)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while not any(p.name.startswith(".tmp") for p in data.iterdir()):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the writer never started a write"
            time.sleep(0.001)
    finally:
        proc.send_signal(signal.SIGKILL)  # kill -9 mid-write
        proc.communicate(timeout=60)
    present, referenced = _data_files(wh, "images")
    return {data / name for name in present - referenced}


def _record_model(wh, name: str, version: int, table_versions: dict[str, int]) -> None:
    from stages.versions import record_model

    record_model(wh, {
        "name": name, "version": version, "kind": "images", "label_column": "label", "split_name": "label-s0-f70.15.15",
        "classes_json": "[]", "config_json": "{}", "seed": 0, "metrics_json": "{}", "test_balanced_accuracy": None,
        "split_seed": 0, "split_version": None, "split_hash": None,
        "test_balanced_accuracy_low": None, "test_balanced_accuracy_high": None,
        "artefact_path": str(wh.models_dir / name / f"v{version}"), "weights_origin": "random",
        "table_versions_json": json.dumps(table_versions), "train_seconds": None,
        "gate_passed": False, "gate_json": "{}", "excluded_classes_json": "[]",
    })


def _sorted_rows(table: pa.Table) -> list[dict]:
    return table.sort_by("galaxy_id").to_pylist()


def test_vacuum_removes_a_killed_writers_leftovers_and_keeps_model_versions(warehouse):
    from stages.maintenance import vacuum

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(8)]
    v_model = warehouse.upsert("images", [image_row(i, images[i]) for i in range(5)])
    v_old = warehouse.upsert("images", [image_row(i, images[i][::-1]) for i in range(3)])
    warehouse.upsert("images", [image_row(i, images[i]) for i in range(5, 8)])
    _record_model(warehouse, "cnn", 1, {"images": v_model})
    model_rows = _sorted_rows(warehouse.read("images", version=v_model))
    latest = _sorted_rows(warehouse.read("images"))
    fragments = len(warehouse.dataset("images").get_fragments())
    leftovers = _kill_a_writer(warehouse)
    assert any(p.name.startswith(".tmp") for p in leftovers)
    assert warehouse.versions()["images"] == v_model + 2  # nothing committed

    # fresh leftovers may be a write in flight, and just-superseded versions may be a writer's base:
    # the default grace of 1 hour keeps both
    first = {r.table: r for r in vacuum(warehouse, older_than=timedelta(0)).reports}["images"]
    assert first.leftovers_kept == len(leftovers) and first.leftovers_removed == 0
    assert all(p.exists() for p in leftovers)
    assert first.pinned == {pin_name("model-cnn-v1"): v_model}
    assert first.fragments_before == fragments == 3 and first.fragments_after == 1
    assert first.versions_removed == 0 and first.versions_kept_in_grace >= 2

    hours_ago = time.time() - 2 * 3600
    for p in leftovers:
        os.utime(p, (hours_ago, hours_ago))
    out = vacuum(warehouse, older_than=timedelta(0))
    assert type(out).from_metadata(out.to_metadata()) == out  # the typed result owns its metadata keys
    assert "vacuum_images" in out.to_metadata()
    second = {r.table: r for r in out.reports}["images"]
    assert second.leftovers_removed == len(leftovers) and second.leftovers_kept == 0  # older than the grace
    assert not any(p.exists() for p in leftovers)

    third = {r.table: r for r in vacuum(warehouse, older_than=timedelta(0), grace=timedelta(0)).reports}["images"]
    assert third.versions_removed >= 2  # v_old, the last write, and what compaction superseded
    assert [h["version"] for h in warehouse.history("images")] == [v_model, third.version]
    present, referenced = _data_files(warehouse, "images")
    assert present == referenced  # nothing unreferenced left, nothing referenced lost

    assert _sorted_rows(warehouse.read("images")) == latest  # the table reads the same
    assert _sorted_rows(warehouse.read("images", version=v_model)) == model_rows  # the model's version, by time travel
    with pytest.raises(WarehouseError, match="no version"):
        warehouse.read("images", version=v_old)  # an unpinned old version is gone
    np.testing.assert_array_equal(warehouse.read_image("demo:000006"), images[6])
    warehouse.upsert("images", [image_row(9, images[0])])  # and the table is still writable
    assert warehouse.count("images") == 9


def test_pins_follow_the_registry_and_young_versions_stay(warehouse):
    v1 = warehouse.upsert("galaxies", [galaxy_row(0)])
    v2 = warehouse.upsert("galaxies", [galaxy_row(1)])
    warehouse.upsert("galaxies", [galaxy_row(2)])
    report = warehouse.vacuum(keep_versions={"a": {"galaxies": v1}, "gone": {"galaxies": 999}})[0]
    assert report.pinned == {"pin-a": v1} and report.missing_pins == {"pin-gone": 999}
    assert report.versions_removed == 0  # all younger than the default 7 days
    assert warehouse.read("galaxies", version=v2).num_rows == 2
    # the pin of a model that left the registry is dropped: its version can go now
    warehouse.vacuum(keep_versions={}, older_than=timedelta(0), grace=timedelta(0), compact=False)
    assert not warehouse.dataset("galaxies").tags.list()
    with pytest.raises(WarehouseError, match="no version"):
        warehouse.read("galaxies", version=v1)
    with pytest.raises(WarehouseError, match=">= 0"):
        warehouse.vacuum(older_than=timedelta(hours=-1))


def test_cli_vacuum_runs_as_a_dagster_job(warehouse, capsys):
    from dagster_project.runner import instance_for
    from service.cli import main

    v1 = warehouse.upsert("galaxies", [galaxy_row(i) for i in range(4)])
    warehouse.upsert("galaxies", [galaxy_row(i, label=3) for i in range(4)])
    _record_model(warehouse, "cnn", 1, {"galaxies": v1})
    home = ["--home", str(warehouse.root)]
    assert main([*home, "vacuum", "--older-than", "0", "--grace", "0"]) == 0
    out = capsys.readouterr().out
    assert "galaxies" in out and "vacuum: Dagster run" in out
    runs = instance_for(warehouse).get_runs()
    assert [r.job_name for r in runs] == ["vacuum"] and runs[0].is_success
    assert warehouse.read("galaxies", version=v1).num_rows == 4
    assert [h["version"] for h in warehouse.history("models")] == [warehouse.versions()["models"]]
    assert main([*home, "vacuum", "--older-than", "7"]) == 2
    assert "unit" in capsys.readouterr().err
    assert main([*home, "vacuum", "--table", "nope"]) == 2
    assert "no table nope" in capsys.readouterr().err


def test_writers_beside_a_vacuum_all_land(warehouse):
    """Processes upserting while vacuum runs over and over: no write fails, no row is lost."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(PROJECT_ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_warehouse import galaxy_row
        from warehouse import Warehouse
        wh = Warehouse.open({str(warehouse.root)!r})
        base = int(sys.argv[1])
        for k in range(15):  # new rows, and an update of galaxy 0 (deletion files: what a vacuum could remove)
            wh.upsert("galaxies", [galaxy_row(base + 10 * k + j) for j in range(10)] + [galaxy_row(0, label=k % 10)])
        """
    )
    warehouse.upsert("galaxies", [galaxy_row(0)])
    procs = [subprocess.Popen([sys.executable, "-c", script, str(base)], stderr=subprocess.PIPE, text=True)
             for base in (1000, 2000)]
    vacuums = 0
    while any(p.poll() is None for p in procs) or vacuums == 0:
        warehouse.vacuum(older_than=timedelta(0))
        vacuums += 1
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert vacuums >= 1 and warehouse.count("galaxies") == 1 + 2 * 150
    assert warehouse.sql("SELECT count(DISTINCT galaxy_id) AS n FROM galaxies")["n"][0] == 301


def test_parse_age():
    from features.errors import InputError
    from service.commands.maintenance import parse_age

    assert parse_age("0") == timedelta(0)
    assert parse_age("36h") == timedelta(hours=36) and parse_age("7d") == timedelta(days=7)
    assert parse_age("1.5m") == timedelta(seconds=90)
    for bad in ("7", "-1h", "1w", "h"):
        with pytest.raises(InputError, match="unit"):
            parse_age(bad)
