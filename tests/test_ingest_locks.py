"""Locks outside the CLI (issue 23 item 15): a Dagster run of a shard, launched through the Dagster API
in another process as the UI does, takes the per-source lock the CLI takes. Real processes throughout."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import PROJECT_ROOT, copy_rings

from dagster_project.resources import run_sources
from dagster_project.runner import instance_for, run_pipeline
from features.sources.folder import FolderSource
from stages.sources import HELD_LOCKS_ENV, held_by_ancestor, register_source, source_lock
from warehouse import Warehouse

# A run of the ingest job for one shard through the Dagster API, in its own process: what the UI launches.
UI_RUN = """
import sys
import dagster as dg
from dagster_project.definitions import defs
from dagster_project.runner import instance_for
from warehouse import Warehouse

root, shard = sys.argv[1], sys.argv[2]
result = defs.resolve_job_def("ingest_job").execute_in_process(
    instance=instance_for(Warehouse.open(root)), partition_key=shard, asset_selection=[dg.AssetKey("galaxies")],
    run_config={"resources": {"warehouse": {"config": {"root": root}}}}, tags={"test": "ui-style"},
    raise_on_error=False)
sys.exit(0 if result.success else 1)
"""

# The CLI's side: hold the source lock (as `astrovision ingest` does around its runs) until told to stop.
HOLDER = """
import pathlib, sys, time
from stages.sources import source_lock
from warehouse import Warehouse

root, name, release = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
with source_lock(Warehouse.open(root), name):
    print("held", flush=True)
    while not release.exists():
        time.sleep(0.1)
    print("released", time.time(), flush=True)
"""


def _env() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    env.pop(HELD_LOCKS_ENV, None)  # a UI run is no child of the CLI
    return env


def _python(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())


def _ui_runs(wh: Warehouse) -> list:
    import dagster as dg

    return instance_for(wh).get_runs(filters=dg.RunsFilter(tags={"test": "ui-style"}))


@pytest.fixture
def rings(shared_dir, tmp_path) -> tuple[Warehouse, str]:
    folder = copy_rings(shared_dir, tmp_path / "rings", 0, 4)
    wh = Warehouse.open(tmp_path / "home")
    (shard,) = register_source(wh, FolderSource(folder, pxscale=None), path=str(folder))
    assert run_pipeline(wh, [shard], groups=["ingest"], progress=False, log=lambda m: None).ok
    return wh, shard


def test_a_ui_style_run_waits_for_the_cli_holding_the_source_lock(rings, tmp_path):
    wh, shard = rings
    before = set(wh.read("galaxies", columns=["run_id"]).column("run_id").to_pylist())
    release = tmp_path / "release"
    holder = _python(HOLDER, str(wh.root), "rings", str(release))
    assert holder.stdout.readline().strip() == "held"
    ui = _python(UI_RUN, str(wh.root), shard)
    deadline = time.monotonic() + 120
    while not _ui_runs(wh) and time.monotonic() < deadline and ui.poll() is None:
        time.sleep(0.2)
    assert _ui_runs(wh), ui.communicate()
    time.sleep(3.0)  # the run has started: it must be waiting for the lock, not writing
    assert ui.poll() is None
    assert set(wh.read("galaxies", columns=["run_id"]).column("run_id").to_pylist()) == before
    release.touch()
    released_at = float(holder.communicate(timeout=30)[0].split()[-1])
    _, err = ui.communicate(timeout=300)
    assert ui.returncode == 0, err[-3000:]
    assert "is being ingested by another process; waiting" in err  # said in the run's log
    rows = wh.read("galaxies", columns=["run_id", "written_at"]).to_pylist()
    (run,) = _ui_runs(wh)
    assert {r["run_id"] for r in rows} == {run.run_id} and len(rows) == 4
    assert min(r["written_at"].timestamp() for r in rows) >= released_at  # written only after the CLI let go


def test_a_cli_ingest_and_a_ui_style_run_of_one_source_at_once_keep_every_row(rings):
    """As safe as two CLI writes: both finish, every galaxy once with its image, the CLI says it waited
    when the run held the lock first (or the run waited for the CLI)."""
    wh, shard = rings
    folder = wh.read("sources").column("path")[0].as_py()
    cli = subprocess.Popen([sys.executable, "-m", "service.cli", "--home", str(wh.root), "ingest", "--source",
                            "folder", "--path", folder, "--pxscale", "unknown"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    ui = _python(UI_RUN, str(wh.root), shard)
    _, cli_err = cli.communicate(timeout=300)
    _, ui_err = ui.communicate(timeout=300)
    assert cli.returncode == 0, cli_err[-3000:]
    assert ui.returncode == 0, ui_err[-3000:]
    assert wh.count("galaxies") == wh.count("images") == 4
    ids = wh.read("galaxies", columns=["galaxy_id"]).column("galaxy_id").to_pylist()
    assert len(set(ids)) == 4 and all(wh.read_image(g).shape[2] == 3 for g in ids)


def test_the_cli_s_own_runs_do_not_wait_for_their_parent(rings, monkeypatch):
    """The lock the CLI holds is named for its children; a stranger's entry (dead or no ancestor) is not."""
    wh, _ = rings
    assert run_sources({"dagster/partition": "rings-00000"}) == {"rings"} and run_sources({}) == set()
    assert not held_by_ancestor("rings")
    with source_lock(wh, "rings"):
        assert held_by_ancestor("rings") and not held_by_ancestor("other")
        probe = subprocess.run([sys.executable, "-c", "from stages.sources import held_by_ancestor as h; "
                                "print(h('rings'))"], capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, timeout=120)
        assert probe.stdout.strip() == "True"  # a child process sees its parent's lock
    assert not held_by_ancestor("rings") and HELD_LOCKS_ENV not in os.environ
    import socket

    monkeypatch.setenv(HELD_LOCKS_ENV, f'[["{socket.gethostname()}", 1, 0.0, "rings"]]')  # an ancestor, but stale
    assert not held_by_ancestor("rings")
