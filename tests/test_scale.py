"""Scale-out: shard runs at once in real processes (every row kept), the demo on a Dask LocalCluster,
the options' one-line errors, the core split, and the planner's arithmetic."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import dagster as dg
import pytest
from test_cli import cli

from dagster_project.executors import Execution, cores_per_shard, split_cores_config
from dagster_project.runner import PID_TAG
from features.errors import InputError
from stages.plan import COSTS_FILE, Costs, load_costs, plan


def _runs(home) -> list[dg.DagsterRun]:
    """The runs of ``home``'s instance, opened as the CLI opens it (under its instance lock: opening it bare
    while a run process opens it raced the SQLite schema set-up, 'more than one head')."""
    from dagster_project.runner import instance_for
    from warehouse import Warehouse

    return list(instance_for(Warehouse.open(str(home))).get_runs())


def _sql(home, query: str) -> list[dict]:
    proc = cli(home, "sql", query, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_ingest_with_workers_runs_shards_at_once_and_keeps_every_row(tmp_path):
    """4 shards, 4 run processes writing galaxies and images to the same Lance tables at once."""
    home = tmp_path / "home"
    proc = cli(home, "ingest", "--source", "demo", "--n", "12", "--shard-size", "3", "--workers", "4", timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts = _sql(home, "SELECT (SELECT count(*) FROM galaxies) AS g, (SELECT count(DISTINCT galaxy_id) FROM galaxies) "
                        "AS ids, (SELECT count(*) FROM images) AS i, (SELECT count(DISTINCT shard) FROM galaxies) AS s")
    assert counts == [{"g": 12, "ids": 12, "i": 12, "s": 4}]
    shard_runs = [r for r in _runs(home) if r.tags.get("dagster/partition")]
    assert len(shard_runs) == 4 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in shard_runs)
    assert len({r.tags[PID_TAG] for r in shard_runs}) > 1  # executed by separate run processes
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    spans = [(rec.start_time, rec.end_time) for rec in (instance.get_run_record_by_id(r.run_id) for r in shard_runs)]
    most = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert most >= 2  # shard runs were open at the same time


def test_ingest_on_the_multiprocess_executor_runs_each_step_in_a_process_of_its_own(tmp_path):
    """``--executor multiprocess``: the job rebuilt from its module in every step process
    (``dagster.build_reconstructable_job``), two shard runs at once, every row kept."""
    home = tmp_path / "home"
    proc = cli(home, "ingest", "--source", "demo", "--n", "4", "--shard-size", "2", "--workers", "2",
               "--executor", "multiprocess", timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _sql(home, "SELECT count(DISTINCT galaxy_id) AS ids FROM galaxies") == [{"ids": 4}]
    shard_runs = [r for r in _runs(home) if r.tags.get("dagster/partition")]
    assert len(shard_runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in shard_runs)
    assert all("multiprocess" in r.run_config["execution"]["config"] for r in shard_runs)


def _children(pid: int) -> list[int]:
    from pathlib import Path

    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.slow
def test_a_killed_run_process_fails_its_run_and_the_next_command_finishes_the_shards(tmp_path):
    """kill -9 of one run process: the command reports that run failed (exit 1, no traceback); the same
    ingest again marks the dead process's run failed and materializes every shard, no row doubled."""
    import signal as sig

    home = tmp_path / "home"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "--home", str(home), "ingest", "--source", "demo",
                             "--n", "80", "--shard-size", "20", "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        runs = [r for r in (_runs(home) if (home / "dagster" / "dagster.yaml").exists() else [])
                if r.status == dg.DagsterRunStatus.STARTED and r.tags.get("dagster/partition")]
        if runs and int(runs[0].tags[PID_TAG]) in _children(proc.pid):
            victim = int(runs[0].tags[PID_TAG])
        time.sleep(0.2)
    if victim is None:
        out, err = proc.communicate(timeout=300)
        pytest.fail(f"no shard run was seen running (exit {proc.returncode}): {out[-1000:]} {err[-1000:]}")
    os.kill(victim, sig.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out[-2000:] + err[-2000:]
    assert "FAILED run (shard demo-" in out and "Traceback" not in err
    again = cli(home, "ingest", "--source", "demo", "--n", "80", "--shard-size", "20", "--workers", "2", timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "left open by a process that is gone: marked failed" in again.stdout
    assert not [r for r in _runs(home) if r.status == dg.DagsterRunStatus.STARTED]
    assert _sql(home, "SELECT count(*) AS n, count(DISTINCT galaxy_id) AS ids FROM galaxies") == [{"n": 80, "ids": 80}]


_WRITER = """
import sys, time
from pathlib import Path
import pyarrow as pa
from models.toy import toy_images, toy_rows
from warehouse import Warehouse
root, k, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
images, labels = toy_images(20, size=16, seed=k)
galaxies, imgs = toy_rows(images, labels, source=f"w{k}", shard=f"w{k}-00000")
wh = Warehouse.open(root)
while not go.exists():
    time.sleep(0.01)
wh.upsert("images", pa.table(imgs), run_id=f"writer-{k}")
wh.upsert("galaxies", pa.table(galaxies), run_id=f"writer-{k}")
"""


def test_lance_writers_started_together_lose_no_row(tmp_path):
    """Six processes create and commit to the same two tables at one moment: 6 x 20 rows in each."""
    go = tmp_path / "go"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path / "home"), str(k), str(go)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(6)]
    time.sleep(3.0)  # let them import and wait at the barrier
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
    from warehouse import Warehouse

    wh = Warehouse.open(tmp_path / "home")
    ids = wh.read("galaxies", columns=["galaxy_id"]).column("galaxy_id").to_pylist()
    assert len(ids) == len(set(ids)) == 120 and wh.count("images") == 120
    assert {i.split(":")[0] for i in ids} == {f"w{k}" for k in range(6)}


@pytest.mark.slow
def test_demo_on_a_dask_local_cluster(tmp_path):
    """The demo end to end with every step a task on a 2-worker LocalCluster; its 2 shards at once."""
    pytest.importorskip("dagster_dask", reason="the optional dependency astrovision[dask] is not installed")
    home = tmp_path / "home"
    proc = cli(home, "demo", "--n", "8", "--shard-size", "4", "--executor", "dask", "--workers", "2", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    tables = {r["table"]: r["rows"] for r in json.loads(cli(home, "tables", "--format", "json").stdout)}
    assert tables["galaxies"] == tables["images"] == tables["photometry"] == 8
    assert tables["morphometrics"] == 8 and tables["splits"] == 8
    assert any(t.startswith("embeddings_") and n == 8 for t, n in tables.items())
    runs = _runs(home)
    assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    clusters = {json.dumps(r.run_config["execution"]["config"]["cluster"], sort_keys=True) for r in runs}
    assert len(clusters) == 1 and '"existing"' in clusters.pop()  # one cluster served every run


@pytest.mark.parametrize(("args", "needle"), [
    (("--workers", "0"), "--workers must be a positive integer (at least 1); got 0"),
    (("--dask-address", "tcp://127.0.0.1:1", "--executor", "multiprocess"),
     "--dask-address needs --executor dask (got --executor multiprocess)"),
])
def test_execution_options_are_refused_in_one_line_with_nothing_written(tmp_path, args, needle):
    home = tmp_path / "home"
    proc = cli(home, "ingest", "--source", "demo", "--n", "3", *args, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [f"astrovision: error: {needle}"]
    assert not (home / "lance").exists()


def test_parallel_shards_split_the_cores_unless_told():
    chosen = {"galaxies", "morphometrics"}
    auto = split_cores_config({}, 2, chosen)
    assert auto["ops"]["morphometrics"]["config"]["workers"] == cores_per_shard(2) >= 1
    told = split_cores_config({"ops": {"morphometrics": {"config": {"workers": 7, "bands": ["g"]}}}}, 2, chosen)
    assert told["ops"]["morphometrics"]["config"] == {"workers": 7, "bands": ["g"]}
    assert split_cores_config({}, 1, chosen) == {} and split_cores_config({}, 4, {"galaxies"}) == {}
    assert Execution.of(2).executor == "in_process" and Execution.of(1, dask_address="tcp://h:1").executor == "dask"


def _costs(**overrides) -> Costs:
    base = dict(core_seconds_per_galaxy={"galaxies": 0.25, "morphometrics": 0.75},
                serial_seconds_per_galaxy={"duplicate_groups": 0.1}, bytes_per_galaxy={"images": 1000.0, "galaxies": 10.0,
                                                                           "morphometrics": 5.0},
                tables_of_stage={"galaxies": ["galaxies", "images"], "morphometrics": ["morphometrics"]},
                run_overhead_s={"in_process": 2.0})
    return Costs(**{**base, **overrides})


def test_planner_schedules_shards_on_the_first_free_worker():
    # 10 galaxies in shards of 4: 4, 4, 2 -> 6 s, 6 s, 4 s on 1 core each (1 core-s per galaxy + 2 s start-up);
    # 2 workers: (6 + 4) and 6 -> 10 s; then duplicate_groups once: 10 x 0.1 + 2 = 3 s.
    p = plan(_costs(), 10, 4, 2, cores_per_worker=1)
    assert (p.shards, p.shards_wall_s, p.serial_wall_s, p.wall_s) == (3, 10.0, 3.0, 13.0)
    assert p.bytes_by_table == {"galaxies": 100.0, "images": 10_000.0, "morphometrics": 50.0}
    assert p.core_hours == pytest.approx((10 * 1.0 + 10 * 0.1) / 3600)
    one = plan(_costs(), 10, 4, 1, cores_per_worker=2)  # 1 worker, 2 cores: 4, 4, 3 s one after another
    assert one.shards_wall_s == pytest.approx(11.0)
    only = plan(_costs(), 10, 4, 2, cores_per_worker=1, stages=["galaxies"])
    assert only.serial_wall_s == 0 and set(only.bytes_by_table) == {"galaxies", "images"}


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"galaxies": 0}, "--galaxies must be positive; got 0"),
    ({"workers": 0}, "--workers must be positive; got 0"),
    ({"stages": ["embeddings"]}, "no measured cost for stage(s) ['embeddings']"),
    ({"executor": "dask"}, "no measured run start-up for executor 'dask'"),
])
def test_planner_refuses_what_it_cannot_plan(kwargs, needle):
    args = {"galaxies": 10, "shard_size": 4, "workers": 2, **kwargs}
    with pytest.raises(InputError, match=re.escape(needle)):
        plan(_costs(), args.pop("galaxies"), args.pop("shard_size"), args.pop("workers"), cores_per_worker=1, **args)


def test_plan_command_reads_a_costs_file(tmp_path):
    costs = tmp_path / "costs.json"
    costs.write_text(json.dumps({k: v for k, v in _costs().__dict__.items()}))
    proc = cli(tmp_path / "home", "plan", "--galaxies", "10", "--shard-size", "4", "--workers", "2",
               "--cores-per-worker", "1", "--costs", str(costs), "--format", "json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["wall_s"], out["bytes_total"]) == (13.0, 10_150.0)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    proc = cli(tmp_path / "home", "plan", "--galaxies", "10", "--costs", str(bad), timeout=120)
    assert proc.returncode == 2 and "is not a planner costs file" in proc.stderr
    proc = cli(tmp_path / "home", "plan", "--galaxies", "10", "--workers", "0", "--costs", str(costs), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["astrovision: error: plan: --workers must be positive; got 0"]
    assert load_costs().run_overhead_s  # the measured file shipped with the code loads


def _stage_costs() -> dict:
    return {
        "morphometrics": {"runs": "shard", "wall_s": {"fixed": 2.0, "per_galaxy": 0.5, "per_trained": 0.0},
                          "cpu_s": {"fixed": 1.0, "per_galaxy": 1.0, "per_trained": 0.0}},
        "cnn": {"runs": "once", "budget": "cnn", "share": 0.7,
                "wall_s": {"fixed": 10.0, "per_galaxy": 0.01, "per_trained": 0.1},
                "cpu_s": {"fixed": 10.0, "per_galaxy": 0.02, "per_trained": 0.2}},
    }


def test_per_stage_projection_counts_shard_runs_and_stops_training_costs_at_the_budget():
    from stages.plan import project_stages

    costs = _costs(stage_costs=_stage_costs())
    small = {r.stage: r for r in project_stages(costs, 100, 40, budgets={"cnn": 200})}
    # three shard runs, the fixed cost once per command (stages.plan: rehearsals at one shard size)
    assert (small["morphometrics"].runs, small["morphometrics"].wall_s, small["morphometrics"].cpu_s) == (3, 52.0, 101.0)
    one = {r.stage: r for r in project_stages(costs, 100, 100, budgets={"cnn": 200})}
    assert one["morphometrics"].runs == 1 and one["morphometrics"].wall_s == small["morphometrics"].wall_s
    assert (small["cnn"].runs, small["cnn"].trained, small["cnn"].cap) == (1, 70, 200)
    assert small["cnn"].wall_s == pytest.approx(10 + 1 + 7) and small["cnn"].cpu_s == pytest.approx(10 + 2 + 14)
    big = {r.stage: r for r in project_stages(costs, 10_000, 1000, budgets={"cnn": 200})}
    assert big["cnn"].trained == 200 and big["cnn"].wall_s == pytest.approx(10 + 100 + 20)  # training capped
    uncapped = {r.stage: r for r in project_stages(costs, 10_000, 1000, budgets={})}
    assert uncapped["cnn"].trained == 7000
    with pytest.raises(InputError, match="no per-stage costs"):
        project_stages(_costs(), 100, 40)
    with pytest.raises(InputError, match="--shard-size must be positive"):
        project_stages(costs, 100, 0)




def test_shipped_costs_cover_every_asset_of_the_default_job_with_the_code_budgets(tmp_path):
    """``astrovision plan`` projects every stage ``ingest --all`` runs, training stages under TRAIN_BUDGETS."""
    from dagster_project.definitions import defs
    from features.embeddings import BASELINE_SAMPLE
    from models.config import TRAIN_BUDGETS
    from stages.plan import project_stages, stage_budgets

    costs = load_costs()
    assets = {k.to_user_string() for k in defs.get_repository_def().asset_graph.get_all_asset_keys()}
    assert assets <= set(costs.stage_costs), sorted(assets - set(costs.stage_costs))
    assert {c["budget"] for c in costs.stage_costs.values() if "budget" in c} == set(stage_budgets())
    rows = {r.stage: r for r in project_stages(costs, 17_736, 1000)}
    assert rows["ssl_encoder"].trained == TRAIN_BUDGETS["ssl_encoder"] and rows["morphometrics"].runs == 18
    assert rows["embeddings"].trained == BASELINE_SAMPLE  # the baseline's sample, not the catalogue
    assert all(r.wall_s >= 0 and r.cpu_s >= 0 for r in rows.values())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(COSTS_FILE.read_text()),
                               "stage_costs": {"cnn": {**_stage_costs()["cnn"], "runs": "twice"}}}))
    with pytest.raises(InputError, match="runs must be shard or once"):
        load_costs(bad)
    proc = cli(tmp_path / "home", "plan", "--galaxies", "17736", "--shard-size", "1000", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "every stage of the default job" in proc.stdout and "ssl_encoder" in proc.stdout
    assert "(cap 2,048)" in proc.stdout
