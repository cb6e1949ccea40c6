"""The in-process runner under concurrency and crashes, with real processes and real Dagster runs.

* Several processes using a fresh warehouse for the first time at once all succeed (the instance's
  SQLite schema is created once, under a lock).
* A run whose process was killed with SIGKILL stays STARTED until the next CLI run marks it failed;
  the run of a process that is still alive is left alone.

The planner's order is unit-tested on hand-made graphs (``tests/test_plan_runs.py``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.instance import process_gone, process_start
from dagster_project.runner import (
    HOST_TAG,
    PID_START_TAG,
    PID_TAG,
    instance_for,
    mark_orphaned_runs,
    run_pipeline,
)
from features.errors import InputError
from warehouse import Warehouse

PROJECT = Path(__file__).resolve().parent.parent

TINY_DEFS = '''
import os
import time
from pathlib import Path

import dagster as dg

from dagster_project.partitions import SHARDS


@dg.asset(partitions_def=SHARDS)
def tiny(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    block = os.environ.get("TINY_BLOCK_FILE")
    if block:  # say the step runs, then block until killed
        Path(block).write_text(context.run_id)
        time.sleep(600)
    return dg.MaterializeResult(metadata={"shard": context.partition_key})


defs = dg.Definitions(assets=[tiny], jobs=[dg.define_asset_job("pipeline_job")])
'''

RUN_TINY = '''
import sys
import time
from pathlib import Path

from dagster_project.runner import run_pipeline
from tiny_defs import defs
from warehouse import Warehouse

home, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():  # every process is imported and waiting: first use at the same instant
    time.sleep(0.01)
report = run_pipeline(Warehouse.open(home), ["t-00000"], defs=defs, progress=False, log=print)
print("ok" if report.ok and report.succeeded == ["tiny[t-00000]"] else f"not ok: {report}")
'''


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A folder holding ``tiny_defs.py`` (one partitioned asset that can block) and ``run_tiny.py``."""
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "tiny_defs.py").write_text(textwrap.dedent(TINY_DEFS))
    (folder / "run_tiny.py").write_text(textwrap.dedent(RUN_TINY))
    return folder


def _env(code: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(code), str(PROJECT), os.environ.get("PYTHONPATH", "")])
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    return {**env, "PYTHONPATH": path, "TQDM_DISABLE": "1", **extra}


def _tiny_defs(code: Path):
    sys.path.insert(0, str(code))
    try:
        import tiny_defs

        return tiny_defs.defs
    finally:
        sys.path.remove(str(code))


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
def test_processes_first_using_a_fresh_home_at_once_all_succeed(tmp_path, tiny):
    home = tmp_path / "home"
    n = 6
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, str(tiny / "run_tiny.py"), str(home), str(tmp_path / f"ready{i}"),
                          str(go)], cwd=tmp_path, env=_env(tiny), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for i in range(n)
    ]
    deadline = time.monotonic() + 180
    while not all((tmp_path / f"ready{i}").exists() for i in range(n)):
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    go.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err
        assert "Traceback" not in err, err
        assert out.strip().splitlines()[-1] == "ok", out + err
    runs = instance_for(Warehouse.open(home)).get_runs()
    assert len(runs) == n
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert {r.job_name for r in runs} == {"pipeline_job"}


@pytest.mark.slow
def test_a_killed_run_is_marked_failed_by_the_next_run_and_a_live_one_is_not(tmp_path, tiny):
    home = tmp_path / "home"
    wh = Warehouse.open(home)
    defs = _tiny_defs(tiny)
    started = tmp_path / "started"
    (tmp_path / "go").touch()
    proc = subprocess.Popen(
        [sys.executable, str(tiny / "run_tiny.py"), str(home), str(tmp_path / "ready"), str(tmp_path / "go")],
        cwd=tmp_path, env=_env(tiny, TINY_BLOCK_FILE=str(started)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_for(started, proc)
        run_id = started.read_text()
        instance = instance_for(wh)
        run = instance.get_run_by_id(run_id)
        assert run.status == dg.DagsterRunStatus.STARTED
        assert run.tags[PID_TAG] == str(proc.pid) and run.tags[HOST_TAG]

        alive = run_pipeline(wh, ["t-00001"], defs=defs, progress=False, log=lambda m: None)
        assert alive.ok and alive.orphaned_runs == []  # its process is still running
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)  # reaped: no zombie left to look alive
    assert proc.returncode == -signal.SIGKILL
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED  # nobody said otherwise

    messages: list[str] = []
    report = run_pipeline(wh, ["t-00002"], defs=defs, progress=False, log=messages.append)
    assert report.ok and report.orphaned_runs == [run_id]
    assert messages == [f"run {run_id} was left open by a process that is gone: marked failed"]
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    again = run_pipeline(wh, ["t-00002"], defs=defs, progress=False, log=messages.append)
    assert again.orphaned_runs == []  # reported once
    statuses = sorted(r.status.value for r in instance.get_runs())
    assert statuses == ["FAILURE", "SUCCESS", "SUCCESS", "SUCCESS"]


def test_a_run_whose_process_id_was_reused_is_marked_failed(warehouse, tiny):
    """After a crash the id may belong to another process (in a container: often this very one); the
    start time in the tags tells them apart."""
    import socket

    job = _tiny_defs(tiny).resolve_job_def("pipeline_job")
    instance = instance_for(warehouse)
    me = {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    started = process_start(os.getpid())
    mine = instance.create_run_for_job(job, status=dg.DagsterRunStatus.STARTED,
                                       tags={**me, PID_START_TAG: started})
    reused = instance.create_run_for_job(job, status=dg.DagsterRunStatus.STARTED,
                                         tags={**me, PID_START_TAG: f"{float(started) - 1:.2f}"})
    elsewhere = instance.create_run_for_job(job, status=dg.DagsterRunStatus.STARTED,
                                            tags={**me, PID_START_TAG: "0", HOST_TAG: "another-host"})
    assert mark_orphaned_runs(instance) == [reused.run_id]
    status = {r.run_id: r.status for r in instance.get_runs()}
    assert status == {mine.run_id: dg.DagsterRunStatus.STARTED, reused.run_id: dg.DagsterRunStatus.FAILURE,
                      elsewhere.run_id: dg.DagsterRunStatus.STARTED}


def test_unknown_group_or_asset_is_a_one_line_error_and_runs_nothing(warehouse, tiny):
    defs = _tiny_defs(tiny)
    with pytest.raises(InputError, match=r"unknown Dagster group\(s\) \['ingset'\]; known: \['default'\]"):
        run_pipeline(warehouse, ["t-00000"], groups=["ingset"], defs=defs, progress=False)
    with pytest.raises(InputError, match=r"unknown asset\(s\) \['huge'\]"):
        run_pipeline(warehouse, ["t-00000"], assets=["huge"], defs=defs, progress=False)
    assert instance_for(warehouse).get_runs() == []


def test_process_liveness_by_psutil_tells_a_running_a_reaped_and_a_reused_process_apart():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = process_start(proc.pid)
        assert started and not process_gone(proc.pid, started) and not process_gone(proc.pid, "")
        assert process_gone(proc.pid, f"{float(started) + 5:.2f}")  # the id, another start: reused
        proc.kill()
        deadline = time.monotonic() + 30
        while not process_gone(proc.pid, started):  # a zombie until reaped: gone already
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert process_gone(proc.pid, started) and process_start(proc.pid) == ""
