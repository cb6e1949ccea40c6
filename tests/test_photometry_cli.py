"""``astrovision photometry match`` and ``plan`` on a tiny warehouse (no network)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from features.photometry import CANONICAL
from service.cli import main


def _setup(wh, tmp_path):
    wh.upsert("galaxies", [
        dict(galaxy_id=f"folder:g{i}", source="folder", native_id=f"g{i}", shard="folder-00000", row_index=i,
             ra=10.0 + 0.01 * i, dec=-5.0, redshift=None, pxscale=0.262, label=None, label_name=None,
             extra_json=None, image_sha1=f"{i:040x}", duplicate_group=None, flags=0)
        for i in range(3)
    ])
    cols = {c: np.full(2, np.nan) for c in CANONICAL}
    cols.update(objid=np.array([7, 8]), ra=np.array([10.0, 10.01]), dec=np.array([-5.0, -5.0]),
                type=np.array([3, 3]), clean=np.array([1, 1]))
    for b in "ugriz":
        cols[f"modelMag_{b}"] = np.array([18.0, 17.5])
        cols[f"modelMagErr_{b}"] = np.array([0.03, 0.03])
        cols[f"extinction_{b}"] = np.zeros(2)
    cols["modelMag_r"] = np.array([17.3, 16.8])
    # other names, through --column-map
    table = pa.table({("RAdeg" if k == "ra" else k): v for k, v in cols.items()})
    pacsv.write_csv(table, tmp_path / "cat.csv")


def test_match_with_catalogue_and_column_map(warehouse, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASTROVISION_HOME", str(warehouse.root))
    _setup(warehouse, tmp_path)
    args = ["--home", str(warehouse.root), "photometry", "match", "--catalog", str(tmp_path / "cat.csv")]
    assert main(args) == 2  # the file calls ra "RAdeg": a one-line error, not a traceback
    assert "missing required column(s) ['ra']" in capsys.readouterr().err
    assert main([*args, "--column-map", json.dumps({"RAdeg": "ra"})]) == 0
    assert "matched 66.7%" in capsys.readouterr().out
    rows = warehouse.read("photometry").sort_by("galaxy_id").to_pylist()
    assert [r["objid"] for r in rows] == [7, 8, None]
    assert abs(rows[0]["g_r"] - 0.7) < 1e-9 and rows[0]["source"] == "catalogue:cat.csv"
    from dagster_project.runner import instance_for

    runs = instance_for(warehouse).get_runs()  # both attempts are runs of the named job, in the UI
    assert sorted((r.job_name, r.status.value) for r in runs) == [("features_job", "FAILURE"),
                                                                  ("features_job", "SUCCESS")]
    assert {r.run_id for r in runs} >= set(warehouse.read("photometry").column("run_id").to_pylist())


def test_plan_counts_requests_without_asking(warehouse, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASTROVISION_HOME", str(warehouse.root))
    coords = tmp_path / "coords.csv"
    coords.write_text("index,ra,dec\n" + "".join(f"{i},{10 + i * 0.1},{-5 + i * 0.01}\n" for i in range(60)))
    assert main(["--home", str(warehouse.root), "photometry", "plan", "--coords", str(coords), "--rate", "2"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["n_batches"] == 3 and est["n_to_request"] == 3 and est["est_seconds"] == 1.5
