"""The warehouse: schemas, idempotent upserts, time travel, crash safety, images, concurrency."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from warehouse import Warehouse, WarehouseError, quote, resolve_root
from warehouse.images import decode_image, encode_image

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def galaxy_row(i: int, **over) -> dict:
    row = dict(
        galaxy_id=f"demo:{i:06d}", source="demo", native_id=f"{i:06d}", shard="demo-00000", row_index=i,
        ra=10.0 + i * 1e-3, dec=-1.0, redshift=0.05, pxscale=0.262, label=i % 10, label_name=f"c{i % 10}",
        extra_json=None, image_sha1=f"{i:040x}", duplicate_group=None, flags=0,
    )
    row.update(over)
    return row


def image_row(i: int, image: np.ndarray) -> dict:
    enc, data = encode_image(image)
    return dict(galaxy_id=f"demo:{i:06d}", shard="demo-00000", encoding=enc, data=data,
                height=image.shape[0], width=image.shape[1], channels=image.shape[2], dtype=str(image.dtype),
                bands="z,r,g", image_kind="rgb_composite", stretch_json=None)


def test_open_creates_layout_and_respects_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTROVISION_HOME", str(tmp_path / "envhome"))
    assert resolve_root() == (tmp_path / "envhome").resolve()
    wh = Warehouse.open()
    for sub in ("lance", "models", "dagster", "cache"):
        assert (wh.root / sub).is_dir()
    assert Warehouse.open(tmp_path / "explicit").root == (tmp_path / "explicit").resolve()


def test_upsert_twice_leaves_same_rows(warehouse):
    rows = [galaxy_row(i) for i in range(5)]
    v1 = warehouse.upsert("galaxies", rows, run_id="run-1")
    v2 = warehouse.upsert("galaxies", rows, run_id="run-2")
    assert v2 == v1 + 1
    table = warehouse.read("galaxies").sort_by("galaxy_id")
    assert table.num_rows == 5
    assert set(table.column("run_id").to_pylist()) == {"run-2"}
    assert table.column("code_version").null_count == 0


def test_upsert_updates_by_key_and_inserts_new(warehouse):
    warehouse.upsert("galaxies", [galaxy_row(i) for i in range(3)])
    warehouse.upsert("galaxies", [galaxy_row(2, label=7), galaxy_row(3)])
    table = warehouse.read("galaxies")
    labels = dict(zip(table.column("galaxy_id").to_pylist(), table.column("label").to_pylist()))
    assert len(labels) == 4
    assert labels["demo:000002"] == 7


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([galaxy_row(1), galaxy_row(1)], "duplicate keys"),
        ([{k: v for k, v in galaxy_row(1).items() if k != "ra"}], "missing \\['ra'\\]"),
        ([{**galaxy_row(1), "bogus": 1}], "unexpected \\['bogus'\\]"),
        ([galaxy_row(1, source=None)], "null value"),
        ([galaxy_row(1, ra="not a number")], "cannot store"),
    ],
)
def test_bad_rows_raise_and_write_nothing(warehouse, rows, message):
    warehouse.upsert("galaxies", [galaxy_row(0)])
    before = warehouse.versions()
    with pytest.raises(WarehouseError, match=message):
        warehouse.upsert("galaxies", rows)
    assert warehouse.versions() == before
    assert warehouse.count("galaxies") == 1


def test_unknown_table_lists_known_ones(warehouse):
    with pytest.raises(KeyError, match="galaxies"):
        warehouse.upsert("nope", [{"a": 1}])
    with pytest.raises(WarehouseError, match="does not exist"):
        warehouse.read("galaxies")


def test_time_travel(warehouse):
    warehouse.upsert("galaxies", [galaxy_row(0, label=1)])
    v = warehouse.versions()["galaxies"]
    warehouse.upsert("galaxies", [galaxy_row(0, label=5), galaxy_row(1)])
    assert warehouse.read("galaxies", version=v).column("label").to_pylist() == [1]
    assert warehouse.count("galaxies") == 2
    assert [h["version"] for h in warehouse.history("galaxies")] == [v, v + 1]
    with pytest.raises(WarehouseError, match="no version"):
        warehouse.read("galaxies", version=99)


def test_failed_stream_mid_write_keeps_previous_version(warehouse):
    warehouse.upsert("galaxies", [galaxy_row(i) for i in range(3)])
    before = warehouse.versions()
    spec_schema = pa.Table.from_pylist([galaxy_row(0)]).schema

    def batches():
        yield pa.RecordBatch.from_pylist([galaxy_row(10), galaxy_row(11)], schema=spec_schema)
        yield pa.RecordBatch.from_pylist([galaxy_row(10)], schema=spec_schema)  # duplicate: abort

    reader = pa.RecordBatchReader.from_batches(spec_schema, batches())
    with pytest.raises(WarehouseError, match="duplicate key"):
        warehouse.upsert("galaxies", reader)
    assert warehouse.versions() == before
    assert warehouse.count("galaxies") == 3


def test_process_killed_mid_write_leaves_previous_version_readable(warehouse):
    """A writer process that dies inside Lance's write (no commit) must not damage the table."""
    warehouse.upsert("galaxies", [galaxy_row(i) for i in range(3)])
    before = warehouse.versions()["galaxies"]
    script = textwrap.dedent(
        f"""
        import os, sys
        import pyarrow as pa
        sys.path.insert(0, {str(PROJECT_ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_warehouse import galaxy_row
        from warehouse import Warehouse
        wh = Warehouse.open({str(warehouse.root)!r})
        schema = pa.Table.from_pylist([galaxy_row(0)]).schema
        def batches():
            for k in range(20):
                yield pa.RecordBatch.from_pylist([galaxy_row(100 + 50 * k + j) for j in range(50)], schema=schema)
                if k == 10:
                    os._exit(9)  # the process dies with fragments half written
        wh.upsert("galaxies", pa.RecordBatchReader.from_batches(schema, batches()))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    reopened = Warehouse.open(warehouse.root)
    assert reopened.versions()["galaxies"] == before
    assert reopened.count("galaxies") == 3
    reopened.upsert("galaxies", [galaxy_row(3)])  # and it is still writable
    assert reopened.count("galaxies") == 4


def test_concurrent_writers_all_land(warehouse):
    """Two processes upserting disjoint rows at once: commit conflicts are retried, nothing is lost."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(PROJECT_ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_warehouse import galaxy_row
        from warehouse import Warehouse
        wh = Warehouse.open({str(warehouse.root)!r})
        base = int(sys.argv[1])
        for k in range(6):
            wh.upsert("galaxies", [galaxy_row(base + 10 * k + j) for j in range(10)])
        """
    )
    warehouse.upsert("galaxies", [galaxy_row(0)])
    procs = [subprocess.Popen([sys.executable, "-c", script, str(base)], stderr=subprocess.PIPE, text=True)
             for base in (1000, 2000)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert warehouse.count("galaxies") == 1 + 2 * 60


def test_processes_creating_a_table_at_once_all_land(warehouse):
    """The first writes of four processes, released at one instant, into a table that does not exist yet.

    Lance commits a racing second ``create`` as an overwrite of the first (that lost one folder's
    images when two folder ingests ran together); the creation lock makes the losers merge instead."""
    import time

    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(PROJECT_ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_warehouse import galaxy_row
        from warehouse import Warehouse
        wh = Warehouse.open({str(warehouse.root)!r})
        rows = [galaxy_row(int(sys.argv[1]) + j) for j in range(10)]
        while time.time() < float(sys.argv[2]):
            pass
        wh.upsert("galaxies", rows)
        """
    )
    start = time.time() + 8  # after every interpreter has started
    procs = [subprocess.Popen([sys.executable, "-c", script, str(base), str(start)], stderr=subprocess.PIPE,
                              text=True) for base in (1000, 2000, 3000, 4000)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert warehouse.count("galaxies") == 40
    assert warehouse.sql("SELECT count(DISTINCT galaxy_id) AS n FROM galaxies")["n"][0] == 40


@pytest.mark.parametrize(
    "image",
    [
        np.arange(64 * 48 * 3, dtype=np.uint8).reshape(64, 48, 3),
        np.arange(32 * 32, dtype=np.uint8).reshape(32, 32, 1),
        np.linspace(-1, 1, 32 * 32 * 2, dtype=np.float32).reshape(32, 32, 2),
    ],
    ids=["rgb-uint8", "grey-uint8", "float32"],
)
def test_image_encoding_is_lossless(image):
    enc, data = encode_image(image)
    assert enc == ("png" if image.dtype == np.uint8 else "npy")
    out = decode_image(enc, data, channels=image.shape[2])
    assert out.dtype == image.dtype
    np.testing.assert_array_equal(out, image)


def test_encode_rejects_wrong_rank():
    with pytest.raises(ValueError, match="2-D or 3-D"):
        encode_image(np.zeros((2, 2, 2, 2), np.uint8))


def test_random_image_read_by_id(warehouse):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(6)]
    warehouse.upsert("images", [image_row(i, im) for i, im in enumerate(images)])
    np.testing.assert_array_equal(warehouse.read_image("demo:000004"), images[4])
    got = warehouse.read_images(["demo:000005", "demo:000001"])
    np.testing.assert_array_equal(got[0], images[5])
    np.testing.assert_array_equal(got[1], images[1])
    with pytest.raises(WarehouseError, match="not in 'images'"):
        warehouse.read_image("demo:999999")
    assert warehouse.read("images", columns=["height"], where=f"galaxy_id = {quote('demo:000002')}").num_rows == 1


def test_images_decoded_on_threads_equal_the_serial_ones(warehouse):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(9)]
    warehouse.upsert("images", [image_row(i, im) for i, im in enumerate(images)])
    ids = [f"demo:{i:06d}" for i in (8, 0, 3, 5, 1, 7, 2, 6, 4)]
    serial = warehouse.read_images(ids)
    threaded = warehouse.read_images(ids, threads=3)
    assert len(threaded) == 9
    for a, b, i in zip(serial, threaded, (8, 0, 3, 5, 1, 7, 2, 6, 4)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(b, images[i])  # in the order asked for


def test_quote_escapes():
    assert quote("a'b") == "'a''b'"


# ------------------------------------------------------------------------------------ replace
def prediction_rows(model: str, ids: range, version: int = 1, label: int = 0) -> list[dict]:
    return [dict(galaxy_id=f"demo:{i:06d}", model_name=model, model_version=version, probabilities=[0.25, 0.75],
                 predicted_label=label, predicted_name=f"c{label}", split=None, split_hash=None,
                 temperature=None, calibrated_probabilities=None, conformal_set=None,
                 conformal_set_size=None, marginal_set=None,
                 predictive_entropy=None, mutual_information=None, mc_dropout=None) for i in ids]


def test_replace_is_one_commit_and_leaves_other_ranges_untouched(warehouse):
    warehouse.upsert("predictions", prediction_rows("a", range(10)) + prediction_rows("b", range(10)), run_id="r1")
    before = warehouse.versions()["predictions"]
    b_before = warehouse.read("predictions", where="model_name = 'b'").sort_by("galaxy_id")
    # a's range becomes galaxies 6..11: 6..9 updated, 10..11 inserted, 0..5 deleted
    v = warehouse.replace("predictions", prediction_rows("a", range(6, 12), label=1), where="model_name = 'a'",
                          run_id="r2")
    assert v == warehouse.versions()["predictions"] == before + 1
    a = warehouse.read("predictions", where="model_name = 'a'").sort_by("galaxy_id")
    assert a.column("galaxy_id").to_pylist() == [f"demo:{i:06d}" for i in range(6, 12)]
    assert set(a.column("predicted_label").to_pylist()) == {1} and set(a.column("run_id").to_pylist()) == {"r2"}
    assert warehouse.read("predictions", where="model_name = 'b'").sort_by("galaxy_id").equals(b_before)
    assert warehouse.read("predictions", version=before).num_rows == 20  # the old range, whole, by time travel
    assert warehouse.replace("predictions", [], where="model_name = 'a'") == before + 2
    assert warehouse.count("predictions") == 10 and warehouse.count("predictions", "model_name = 'b'") == 10


def test_replace_with_bad_rows_writes_nothing(warehouse):
    warehouse.upsert("predictions", prediction_rows("a", range(4)))
    before = warehouse.versions()
    bad = prediction_rows("a", range(2)) + prediction_rows("a", range(1))
    with pytest.raises(WarehouseError, match="duplicate keys"):
        warehouse.replace("predictions", bad, where="model_name = 'a'")
    assert warehouse.versions() == before and warehouse.count("predictions") == 4


def test_concurrent_replaces_of_different_ranges_all_land(warehouse):
    """Processes replacing their own model's range at once: Lance retries the conflicts, every range ends exact."""
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(PROJECT_ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_warehouse import prediction_rows
        from warehouse import Warehouse
        wh = Warehouse.open({str(warehouse.root)!r})
        model, start = sys.argv[1], float(sys.argv[2])
        time.sleep(max(0.0, start - time.time()))
        for k in range(8):
            wh.replace("predictions", prediction_rows(model, range(k % 3, 30 + 5 * (k % 4)), label=k),
                       where=f"model_name = '{{model}}'")
        """
    )
    import time

    warehouse.upsert("predictions", prediction_rows("keep", range(5)))
    start = time.time() + 3.0  # all processes past their imports before the first write
    procs = [subprocess.Popen([sys.executable, "-c", script, m, str(start)], stderr=subprocess.PIPE, text=True)
             for m in ("a", "b", "c")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    for m in ("a", "b", "c"):  # the last replace (k = 7): galaxies 1..44, label 7
        rows = warehouse.read("predictions", where=f"model_name = '{m}'")
        assert sorted(rows.column("galaxy_id").to_pylist()) == [f"demo:{i:06d}" for i in range(1, 45)]
        assert set(rows.column("predicted_label").to_pylist()) == {7}
    assert warehouse.count("predictions", "model_name = 'keep'") == 5
