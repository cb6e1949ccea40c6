"""``astrovision ingest`` in real processes: out-of-range input is refused in one line with nothing
written; two ingests at once keep every row (distinct sources run side by side, the same source waits)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
from conftest import SHARED, copy_rings
from PIL import Image
from test_cli import cli

from dagster_project.runner import instance_for
from stages.sources import register_source, source_lock
from warehouse import Warehouse


def _popen(home, *args: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    return subprocess.Popen([sys.executable, "-m", "service.cli", "--home", str(home), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _ingest_args(folder, *extra: str) -> tuple[str, ...]:
    return ("ingest", "--source", "folder", "--path", str(folder), "--label-column", "ring",
            "--pxscale", "unknown", *extra)


def _fresh_home(tmp_path) -> Warehouse:
    """A warehouse whose Dagster instance exists, so processes started together do not race to create
    it (the runner's job; see the report of this change)."""
    wh = Warehouse.open(tmp_path / "home")
    instance_for(wh).get_runs()
    return wh


def _set_cell(catalog, row: int, column: str, value: str) -> None:
    with open(catalog, newline="") as fh:
        rows = list(csv.reader(fh))
    rows[1 + row][rows[0].index(column)] = value
    with open(catalog, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)


@pytest.fixture(scope="module")
def home_with_rings(tmp_path_factory):
    """A warehouse holding one small ring folder (``kept``), ingested in process."""
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared/data is not available")
    shared = SHARED / "data"
    tmp = tmp_path_factory.mktemp("ingest_cli")
    from dagster_project.runner import run_pipeline
    from features.sources.folder import FolderSource

    wh = Warehouse.open(tmp / "home")
    kept = copy_rings(shared, tmp / "kept", 0, 4)
    shards = register_source(wh, FolderSource(kept, pxscale=None), path=str(kept))
    assert run_pipeline(wh, shards, groups=["ingest"], progress=False, log=lambda m: None).ok
    return wh


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("pxscale=-1", "--pxscale: pixel scale must be a positive number"),
        ("pxscale=nan", "--pxscale: pixel scale must be a positive number"),
        ("pxscale=abc", "is not a number"),
        ("ra=400", "'ra' is 400.0 (outside [0, 360) degrees) in row 1"),
        ("ra=-5", "'ra' is -5.0 (outside [0, 360) degrees) in row 1"),
        ("dec=100", "'dec' is 100.0 (outside [-90, 90] degrees) in row 1"),
        ("dec=nan", "'dec' is 'nan' (not a finite number) in row 1"),
        ("oversize", "image is 1100 x 1030 pixels, larger than the 1024 px per side"),
        ("name=Bad-Name", "invalid source name 'Bad-Name'"),
    ],
)
def test_bad_input_exits_2_in_one_line_and_writes_nothing(home_with_rings, shared_dir, tmp_path, case, needle):
    wh = home_with_rings
    folder = copy_rings(shared_dir, tmp_path / "bad", 10, 13)
    args = list(_ingest_args(folder))
    what, _, value = case.partition("=")
    if what == "pxscale":
        args[args.index("--pxscale") + 1] = value
    elif what in ("ra", "dec"):
        _set_cell(folder / "catalog.csv", 1, what, value)
    elif what == "oversize":
        victim = sorted((folder / "images").iterdir())[0]
        Image.new("RGB", (1030, 1100), (40, 40, 40)).save(victim)  # width 1030, height 1100
    else:
        args += ["--name", value]
    before = wh.versions()
    proc = cli(wh.root, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert needle in err
    assert wh.versions() == before
    assert wh.sql("SELECT source FROM sources")["source"].to_list() == ["kept"]


def test_two_sources_ingested_at_once_keep_every_row(shared_dir, tmp_path):
    """The reported bug: two folder ingests started together lost one folder (both were source
    ``folder``, and Lance turned the racing creation of a table into an overwrite). 2 x 40 here; the
    full 2 x 185 is ``benchmarks/concurrent_ingest.py``."""
    wh = _fresh_home(tmp_path)
    halves = [copy_rings(shared_dir, tmp_path / name, start, start + 40)
              for name, start in (("rings_a", 0), ("rings_b", 40))]
    procs = [_popen(wh.root, *_ingest_args(h)) for h in halves]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, out + err
        assert "check failed" not in out
    counts = wh.sql("SELECT source, count(*) AS n, count(DISTINCT galaxy_id) AS ids FROM galaxies GROUP BY 1 "
                    "ORDER BY 1")
    assert counts.rows() == [("rings_a", 40, 40), ("rings_b", 40, 40)]
    assert wh.count("images") == 80
    assert wh.sql("SELECT count(*) AS n FROM galaxies WHERE galaxy_id NOT IN (SELECT galaxy_id FROM images)")["n"][0] == 0
    assert wh.sql("SELECT source, n_galaxies FROM sources ORDER BY 1").rows() == [("rings_a", 40), ("rings_b", 40)]


def test_one_source_ingested_twice_at_once_stores_each_galaxy_once(shared_dir, tmp_path):
    wh = _fresh_home(tmp_path)
    folder = copy_rings(shared_dir, tmp_path / "rings", 100, 120)
    procs = [_popen(wh.root, *_ingest_args(folder)) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, out + err
    for table in ("galaxies", "images"):
        n, ids = wh.sql(f"SELECT count(*), count(DISTINCT galaxy_id) FROM {table}").row(0)
        assert (n, ids) == (20, 20)
    assert wh.count("sources") == 1


def test_second_ingest_of_a_source_waits_for_the_first_or_fails_clearly(shared_dir, tmp_path):
    wh = _fresh_home(tmp_path)
    folder = copy_rings(shared_dir, tmp_path / "rings", 200, 210)
    with source_lock(wh, "rings"):  # another ingest of 'rings' is running
        proc = cli(wh.root, *_ingest_args(folder, "--lock-timeout", "0.5"))
        assert proc.returncode == 2
        assert proc.stderr.strip().endswith("try again when it has finished")
        assert "still being ingested by another process after 0.5 s" in proc.stderr
        assert not wh.exists("sources")

        waiting = _popen(wh.root, *_ingest_args(folder))
        line = waiting.stderr.readline()
        assert "source 'rings' is being ingested by another process; waiting for it" in line
        assert not wh.exists("galaxies")
    out, err = waiting.communicate(timeout=600)
    assert waiting.returncode == 0, out + err
    assert wh.count("galaxies") == 10 and wh.count("images") == 10
