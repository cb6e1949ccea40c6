"""Images without positions (issue 23 item 12): real GZ1 SDSS frames with ids and labels only ingest,
flagged ``POSITION_UNKNOWN``, with NULL positions, hash-only duplicate groups and a false ``cone``."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from conftest import SHARED

from dagster_project.runner import run_pipeline
from features.flags import Flag
from features.sources.folder import FolderSource
from stages.sources import register_source
from warehouse import Warehouse

GZ1 = SHARED / "data" / "gz1_sdss"


def gz1_subset(dest: Path, n: int, *, duplicate: bool = False) -> Path:
    """The first ``n`` GZ1 frames and their catalogue rows (no ra / dec columns) copied to ``dest``.

    ``duplicate`` adds one more row whose image is a byte copy of the first (a hash duplicate).
    """
    if not GZ1.is_dir():
        pytest.skip("../shared/data/gz1_sdss is not available")
    with open(GZ1 / "catalog.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1 : n + 1]
    (dest / "images").mkdir(parents=True)
    for row in body:
        shutil.copy(GZ1 / "images" / f"{row[0]}.jpg", dest / "images" / f"{row[0]}.jpg")
    if duplicate:
        copy = [f"{body[0][0]}_copy", *body[0][1:]]
        shutil.copy(GZ1 / "images" / f"{body[0][0]}.jpg", dest / "images" / f"{copy[0]}.jpg")
        body = [*body, copy]
    with open(dest / "catalog.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([header, *body])
    return dest


def test_gz1_frames_without_positions_ingest_flagged(tmp_path):
    folder = gz1_subset(tmp_path / "gz1", 3, duplicate=True)
    wh = Warehouse.open(tmp_path / "home")
    with pytest.warns(UserWarning, match="no 'ra' / 'dec' columns"):
        shards = register_source(wh, FolderSource(folder, label_column="gz1_class", pxscale=None), path=str(folder))
    assert shards == ["gz1-00000"]  # row shards: the documented key when positions are unknown
    report = run_pipeline(wh, shards, groups=["ingest"], progress=False, log=lambda m: None)
    assert report.ok, report.failed
    gal = wh.read("galaxies").sort_by("galaxy_id").to_pylist()
    assert len(gal) == 4 and all(g["ra"] is None and g["dec"] is None for g in gal)
    assert all(g["flags"] & int(Flag.POSITION_UNKNOWN) for g in gal)
    groups = {g["galaxy_id"]: g["duplicate_group"] for g in gal}
    first = gal[0]["galaxy_id"]
    assert groups[first] is not None and groups[first] == groups[f"{first}_copy"]  # hash groups still
    assert sum(g is not None for g in groups.values()) == 2  # NaN positions group nothing
    assert wh.sql("SELECT count(*) AS n FROM galaxies WHERE cone(ra, dec, 0, 0, 1e9)")["n"][0] == 0
    assert wh.sql("SELECT count(*) AS n FROM galaxies WHERE NOT cone(ra, dec, 0, 0, 1)")["n"][0] == 4
