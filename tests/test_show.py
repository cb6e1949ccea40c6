"""``astrovision show ID`` (run as a user would, in a subprocess) and the record order it shares with the API."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

GID = "toy:000001"


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    """A warehouse holding one galaxy in every table ``show`` reads, flags set in galaxies and photometry."""
    from features.flags import Flag
    from warehouse import Warehouse
    from warehouse.schemas import rows_with_defaults as rows
    from warehouse.schemas.embeddings import embedding_spec

    wh = Warehouse.open(tmp_path / "wh")
    one = {"galaxy_id": [GID], "shard": ["toy-00000"]}
    wh.upsert("galaxies", rows("galaxies", 1, **one, source=["toy"], native_id=["1"], row_index=[0], ra=[150.1],
                               dec=[2.2], label=[1], label_name=["Barred Spiral"], image_sha1=["0" * 40],
                               flags=[int(Flag.IMAGE_NAN)]))
    wh.upsert("morphometrics", rows("morphometrics", 1, **one, band=["r"], gini=[0.52], m20=[-1.9]))
    wh.upsert("photometry", rows("photometry", 1, **one, source=["toy"], n_candidates=[1], petroMag_r=[17.25],
                                 flags=[int(Flag.PHOT_NO_MATCH)]))
    wh.upsert("models", rows("models", 1, name=["probe"], version=[1], kind=["probe"], label_column=["label"],
                             split_name=["label-s0"], classes_json=[json.dumps([{"label": 0, "name": "Ring"},
                                                                                {"label": 1, "name": "Barred Spiral"}])],
                             config_json=["{}"], metrics_json=["{}"], gate_passed=[True], gate_json=["{}"],
                             excluded_classes_json=["[]"], artefact_path=[""], table_versions_json=["{}"],
                             weights_origin=["random init"]))
    wh.upsert("predictions", rows("predictions", 1, galaxy_id=[GID], model_name=["probe"], model_version=[1],
                                  probabilities=[[0.1, 0.9]], predicted_label=[1], predicted_name=["Barred Spiral"],
                                  split=["test"]))
    wh.upsert("splits", rows("splits", 1, galaxy_id=[GID], split_name=["label-s0"], split=["test"]))
    spec = embedding_spec("random_vits14", 384)  # the registered width of that encoder's table
    vec = pa.FixedSizeListArray.from_arrays(pa.array(np.linspace(-1, 1, 384), pa.float32()), 384)
    wh.upsert(spec.name, pa.table({"galaxy_id": [GID], "shard": ["toy-00000"], "encoder": ["random_vits14"],
                                   "weights_sha256": ["0" * 64], "weights_origin": ["random init"],
                                   "flags": pa.array([0], pa.int64()), "vector": vec, "patch_mean": vec}), spec=spec)
    wh.upsert("embedding_maps", rows("embedding_maps", 1, galaxy_id=[GID], encoder=["random_vits14"], method=["pca"],
                                     x=[0.25], y=[-1.5], coords=[[0.25, -1.5]]))
    return wh.root


def _show(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", "service.cli", "--home", str(home), "show", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def test_show_prints_catalogue_morphometrics_photometry_predictions_and_flags_first_maps_last(stored):
    proc = _show(stored, GID)
    assert proc.returncode == 0, proc.stderr
    sections = re.findall(r"^\[(\w+)\]$", proc.stdout, flags=re.MULTILINE)
    assert sections == ["galaxies", "morphometrics", "photometry", "predictions", "flags", "splits",
                        "embeddings_random_vits14", "embedding_maps"]
    flags = proc.stdout.split("[flags]\n")[1].split("\n[")[0].splitlines()
    assert [line.split() for line in flags] == [["galaxies", "IMAGE_NAN"], ["morphometrics", "ok"],
                                                 ["photometry", "PHOT_NO_MATCH"],
                                                 ["embeddings_random_vits14", "ok"]]
    assert "petroMag_r               17.25" in proc.stdout and "Barred Spiral" in proc.stdout


def test_record_tables_and_flags_come_in_the_same_order_as_show(stored):
    from stages.records import galaxy_record, galaxy_rows
    from warehouse import Warehouse

    wh = Warehouse.open(stored)
    assert list(galaxy_rows(wh, GID)) == ["galaxies", "morphometrics", "photometry", "predictions", "splits",
                                          "embeddings_random_vits14", "embedding_maps"]
    rec = galaxy_record(wh, GID)
    assert list(rec)[:5] == ["galaxy_id", "catalogue", "morphometrics", "photometry", "predictions"]
    assert list(rec["flags"]) == ["galaxies", "morphometrics", "photometry", "embeddings_random_vits14"]
    assert rec["flags"]["photometry"] == ["PHOT_NO_MATCH"]
