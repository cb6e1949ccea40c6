"""Images without positions (issue 23 item 12): real GZ1 SDSS frames with ids and labels only ingest,
flagged ``POSITION_UNKNOWN``, with NULL positions, hash-only duplicate groups and a false ``cone``."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, SHARED

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


def _offline_env(tmp_path: Path) -> dict[str, str]:
    """No network and no DINOv2 weights: what a laptop on a train has."""
    from features.embeddings import ENCODERS
    from features.weights import env_var_name

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-hf-cache"),
           "PYTHONPATH": str(PROJECT_ROOT)}
    for name in ["ASTROVISION_WEIGHTS_DIR", "TQDM_DISABLE"] + [env_var_name(s.hf_repo) for s in ENCODERS.values()
                                                              if s.hf_repo]:
        env.pop(name, None)
    return env


def test_ingest_all_offline_without_positions_or_photometry_exits_0_and_shows_progress(tmp_path):
    """``ingest --all`` of GZ1 frames (ids and labels only) offline: every stage runs, exit 0, one line
    says photometry is absent, progress (done / total, rate, ETA) shows for the long steps, and the
    library warnings are summarised rather than streamed; ``--require-photometry`` refuses it up front."""
    folder = gz1_subset(tmp_path / "gz1", 6)
    home = tmp_path / "home"
    args = [sys.executable, "-m", "service.cli", "--home", str(home), "ingest", "--source", "folder", "--path",
            str(folder), "--label-column", "gz1_class", "--pxscale", "unknown", "--all"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900, env=_offline_env(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    absent = [ln for ln in proc.stdout.splitlines() if ln.startswith("photometry is absent")]
    assert len(absent) == 1 and "POSITION_UNKNOWN" in absent[0] and "--require-photometry" in absent[0]
    assert "0 step(s) failed" in proc.stdout
    for step in ("images gz1-00000", "morphometrics gz1-00000", "embeddings random_vits14 gz1-00000"):
        assert f"{step}:" in proc.stderr, step  # the tqdm bar of each long step
    assert "deblend" not in proc.stderr and "AstropyUserWarning" not in proc.stderr  # no library warning streamed
    wh = Warehouse(home)
    assert wh.count("galaxies") == wh.count("morphometrics") == wh.count("photometry") == 6
    assert wh.count("embeddings_random_vits14") == 6 and wh.exists("embedding_maps")
    flags = wh.read("photometry").column("flags").to_pylist()
    assert flags == [int(Flag.POSITION_UNKNOWN)] * 6

    versions = wh.versions()
    required = subprocess.run([*args, "--require-photometry"], capture_output=True, text=True, timeout=900,
                              env={**_offline_env(tmp_path), "TQDM_DISABLE": "1"})
    assert required.returncode == 2  # known before anything runs: refused in one line, nothing written
    assert required.stderr.strip().splitlines() == [
        "astrovision: error: --require-photometry: source 'gz1' has no sky positions (no ra / dec in its "
        "catalogue), so no photometry can be cross-matched; add positions, or ingest without "
        "--require-photometry to store its absence flagged"]
    assert wh.versions() == versions
