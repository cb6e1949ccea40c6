"""Cores (issue 25): the CLI's ``--workers`` default (1, by measurement), the per-core choice, the unpartitioned
steps side by side,
the demo's shard count, the torch thread share, the cheaper ``random_vits14`` baseline, and the Galaxy10
rehearsal file."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from test_cli import cli
from test_scale import PID_TAG, _runs

from dagster_project.executors import Execution, auto_workers, cores
from dagster_project.launch import side_by_side
from dagster_project.plan import RunSpec
from service.commands.demo import default_shard_size

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.parametrize("shards", [1, 2, 3, 17])
def test_per_core_workers_are_one_per_core_at_most_one_per_shard(shards):
    assert auto_workers(shards) == max(1, min(cores(), shards))
    resolved = Execution.of(workers=None).resolved(shards)
    assert resolved.workers == auto_workers(shards) and resolved.in_process
    assert Execution.of(workers=3).resolved(shards).workers == 3  # a given --workers is kept


def test_cli_default_is_one_shard_at_a_time_in_process():
    # one per core measured slower and 2.2x the memory on the 2-core demo (docs/benchmarks.md): the default is 1
    import argparse

    from service.commands.execution import add_execution_args, execution_from

    p = argparse.ArgumentParser()
    add_execution_args(p)
    execution = execution_from(p.parse_args([]))
    assert execution.workers == 1 and execution.in_process


def test_only_the_unpartitioned_run_of_a_parallel_command_runs_its_steps_side_by_side():
    shard = RunSpec("shard a", "a", ("galaxies",), 0)
    rest = RunSpec("unpartitioned assets", None, ("splits", "cnn"), 1)
    assert side_by_side(Execution(workers=2), rest)
    assert not side_by_side(Execution(workers=2), shard)
    assert not side_by_side(Execution(workers=1), rest)  # one shard at a time: in process, as before
    assert not side_by_side(Execution(executor="multiprocess", workers=2), rest)  # the user chose an executor


@pytest.mark.parametrize(("n", "ncores"), [(1, 2), (5, 2), (600, 2), (1000, 2), (3000, 2), (600, 1), (600, 4),
                                           (7, 16)])
def test_demo_shards_come_in_a_multiple_of_the_cores(n, ncores):
    size = default_shard_size(n, ncores)
    shards = -(-n // size)
    assert 1 <= size <= 200
    assert shards % ncores == 0 or shards == n  # fewer galaxies than cores: one each


def test_embedding_threads_follow_the_steps_share(monkeypatch):
    from features.embeddings import step_cores as _usable_cores  # what embed_images sizes torch's threads by

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    every = _usable_cores()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _usable_cores() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "999")
    assert _usable_cores() == every
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert _usable_cores() == every


def test_random_baseline_is_a_cheaper_input_of_the_same_network():
    from features.embeddings import ENCODERS, RANDOM_BASELINE_SIZE, embed_images, load_encoder

    assert ENCODERS["random_vits14"].img_size == RANDOM_BASELINE_SIZE == 112
    assert ENCODERS["random_vits14"].is_random and "baseline" in ENCODERS["random_vits14"].description
    enc = load_encoder("random_vits14")
    assert tuple(enc.model.patch_embed.grid_size) == (8, 8)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, 256, 256, 3), dtype=np.uint8)
    cls, mean = embed_images(images, enc)
    assert cls.shape == mean.shape == (3, 384) and np.isfinite(cls).all()
    assert np.linalg.norm(cls[0] - cls[1]) > 0  # the images are told apart


def test_rehearsal_file_is_galaxy10_format_with_its_near_duplicate_pairs(tmp_path):
    from rehearse_galaxy10 import choose_rows, make_file, read_coords

    from features.sources.duplicates import position_pairs
    from features.sources.galaxy10 import Galaxy10Source

    ra, dec = read_coords()
    assert len(ra) == 17_736
    rows, pairs = choose_rows(ra, dec, 300)
    assert len(rows) == 300 and len(pairs) == len(position_pairs(ra, dec)) == 59  # every pair fits in 300
    made = make_file(tmp_path / "g10.h5", 20)
    assert made["n"] == 20 and made["pairs"] == 10
    src = Galaxy10Source(tmp_path / "g10.h5")
    src.validate()
    batch = next(src.iter_batches(0, 20, batch_size=20))
    found = position_pairs(batch.ra, batch.dec)
    assert len(found) == 10
    for i, j in found:  # the same galaxy selected twice: same pixels, same class
        assert np.array_equal(batch.images[i], batch.images[j]) and batch.labels[i] == batch.labels[j]


@pytest.mark.skipif(cores() < 2, reason="one core: one per core is one shard after another")
def test_cli_workers_per_core_runs_shards_side_by_side_in_run_processes(tmp_path):
    home = tmp_path / "home"
    proc = cli(home, "demo", "--n", "8", "--group", "ingest", "--workers", str(cores()), timeout=600)
    assert proc.returncode == 0, proc.stderr
    runs = _runs(home)
    shard_runs = [r for r in runs if r.tags.get("dagster/partition")]
    assert len(shard_runs) == -(-8 // default_shard_size(8, cores()))
    assert all(r.tags.get(PID_TAG) for r in runs)
    rest = [r for r in runs if not r.tags.get("dagster/partition")]
    assert len(rest) == 1  # duplicate_groups, a step process of the multiprocess executor
    assert rest[0].run_config["execution"]["config"]["multiprocess"]["max_concurrent"] == auto_workers(len(shard_runs))
    rows = cli(home, "sql", "SELECT count(*) AS n FROM galaxies", "--format", "csv")
    assert rows.stdout.strip().splitlines()[-1] == "8"


def test_stage_costs_fitted_on_two_rehearsals_reproduce_them(tmp_path):
    """``rehearse_galaxy10.py --fit``: training seconds scale with the galaxies trained on, the rest with N."""
    from rehearse_galaxy10 import fit_stage_costs

    from stages.plan import Costs, project_stages

    def run(n: int, trained: int, morph: float, cnn: float, cnn_train: float) -> dict:
        steps = {"morphometrics": {"wall_s": morph, "cpu_s": 2 * morph, "runs": 1},
                 "cnn": {"wall_s": cnn, "cpu_s": cnn, "runs": 1}}
        return {"n": n, "steps": steps, "training": {"cnn": {"train_s": cnn_train, "trained": trained}},
                "load": [0.5, 0.7], "cores": 2}

    outs = []
    for n, trained in ((100, 70), (400, 280)):  # morphometrics 1 + 0.3 N; cnn: 5 + 0.01 N + 0.1 T of training
        d = tmp_path / f"n{n}"
        d.mkdir()
        (d / "rehearsal.json").write_text(json.dumps(run(n, trained, 1 + 0.3 * n, 5 + 0.01 * n + 0.1 * trained,
                                                         0.1 * trained)))
        outs.append(d)
    stage_costs, measured = fit_stage_costs(outs)
    assert stage_costs["morphometrics"]["runs"] == "shard" and stage_costs["cnn"]["runs"] == "once"
    assert stage_costs["cnn"]["budget"] == "cnn" and stage_costs["cnn"]["share"] == 0.7
    assert stage_costs["cnn"]["wall_s"]["per_trained"] == pytest.approx(0.1)
    assert "100, 400 galaxies" in measured["on"]
    costs = Costs({}, {}, {}, {}, {"in_process": 0.0}, stage_costs=stage_costs)
    at = {r.stage: r for r in project_stages(costs, 400, 1000)}
    assert at["morphometrics"].wall_s == pytest.approx(121.0) and at["morphometrics"].cpu_s == pytest.approx(242.0)
    assert at["cnn"].wall_s == pytest.approx(5 + 4 + 28)
    big = {r.stage: r for r in project_stages(costs, 10_000, 10_000, budgets={"cnn": 2048})}
    assert big["cnn"].wall_s == pytest.approx(5 + 100 + 204.8)  # training stops at the budget, evaluation does not
    from rehearse_galaxy10 import check

    from stages.plan import COSTS_FILE

    path = tmp_path / "costs.json"
    path.write_text(json.dumps({**json.loads(COSTS_FILE.read_text()), "stage_costs": stage_costs}))
    table = check(outs[1], path)
    assert "| morphometrics | 121.0 | 121.0 | 1.00 | 242.0 | 242.0 | 1.00 |" in table
    assert "| cnn | 37.0 | 37.0 | 1.00 |" in table


def test_restep_measures_one_stage_again_on_a_rehearsals_warehouse(tmp_path):
    """``rehearse_galaxy10.py --restep``: the stage runs again as a real ``astrovision train`` under the
    profiler, with the gate's cached pixel baseline removed first; its row is replaced, the old one kept."""
    from rehearse_galaxy10 import restep
    from toy_warehouse import fill_toy_warehouse

    from warehouse import Warehouse

    out = tmp_path / "rehearsal"
    wh = Warehouse.open(out / "home")
    fill_toy_warehouse(wh, n=40)
    stale = Path(wh.cache_dir) / "gate" / "pixels-stale.npy"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"not a cached baseline")
    old = {"wall_s": 999.0, "cpu_s": 999.0, "runs": 1}
    (out / "rehearsal.json").write_text(json.dumps({"n": 40, "steps": {"dinov2_probe": old, "galaxies": old},
                                                    "training": {}}))
    row = restep(out, "dinov2_probe")
    run = json.loads((out / "rehearsal.json").read_text())
    assert run["steps"]["dinov2_probe"] == row and row["runs"] == 1 and 0 < row["wall_s"] < 999
    assert run["steps"]["galaxies"] == old and run["restepped"]["dinov2_probe"]["before"] == old
    assert not stale.exists() and list(stale.parent.glob("pixels-*.npy"))  # fitted again, cached again
    again = restep(out, "dinov2_probe")  # the warehouse's earlier runs of the step are not this one's
    run = json.loads((out / "rehearsal.json").read_text())
    assert again["runs"] == 1 and run["restepped"]["dinov2_probe"]["before"] == row
    assert [m["name"] for m in Warehouse.open(out / "home").read("models").to_pylist()] == ["dinov2_probe"] * 2


def test_restep_of_a_stage_that_fails_says_so_and_keeps_the_rehearsal(tmp_path):
    """A restep whose command fails (here: no embeddings to probe) exits with the command and its status;
    ``rehearsal.json`` is left as it was."""
    from rehearse_galaxy10 import restep

    from warehouse import Warehouse

    out = tmp_path / "rehearsal"
    Warehouse.open(out / "home")
    body = json.dumps({"n": 40, "steps": {"dinov2_probe": {"wall_s": 999.0, "cpu_s": 999.0, "runs": 1}},
                       "training": {}})
    (out / "rehearsal.json").write_text(body)
    with pytest.raises(SystemExit, match=r"train dinov2_probe exited 2"):
        restep(out, "dinov2_probe")
    assert (out / "rehearsal.json").read_text() == body


def test_stage_cost_line_is_fitted_on_relative_residuals():
    """The planner is judged by planned / measured per stage: a small rehearsal weighs as much as a big one."""
    from rehearse_galaxy10 import _line

    ns, secs = [500.0, 2000.0, 5000.0, 17736.0], [35.0, 60.0, 95.0, 420.0]

    def rel_sq(a: float, b: float) -> float:
        return sum(((a + b * n - y) / y) ** 2 for n, y in zip(ns, secs))

    a, b = _line(ns, secs)
    plain_b, plain_a = np.polyfit(ns, secs, 1)
    assert a > 0 and b > 0
    assert rel_sq(a, b) < rel_sq(plain_a, plain_b)
    assert abs(a + b * 500 - 35.0) / 35.0 < abs(plain_a + plain_b * 500 - 35.0) / 35.0
    assert _line([100.0, 400.0], [31.0, 121.0]) == pytest.approx((1.0, 0.3))  # exact points stay exact


def test_step_pool_is_sized_by_the_steps_share_and_keeps_input_order(monkeypatch):
    import math

    from features.parallel import ordered_pool, step_cores

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a step of a parallel shard run on its share
    assert step_cores() == 1
    with ordered_pool() as pmap:
        assert pmap(math.factorial, range(6)) == [1, 1, 2, 6, 24, 120]  # one worker: a plain loop here
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert step_cores() == cores()  # in process (the default --workers 1): every core
    with ordered_pool(2) as pmap:
        assert pmap(math.factorial, range(40)) == [math.factorial(i) for i in range(40)]
        with pytest.raises(ValueError, match="negative"):
            pmap(math.factorial, [3, -1, 4])  # a worker's error reaches the step


def test_step_pool_fails_when_a_worker_dies_instead_of_waiting_forever():
    """A worker killed mid-map (the OOM killer, a crash in compiled code) fails the step at once; with
    ``multiprocessing.Pool`` the lost items were waited for forever (review of the pool)."""
    from concurrent.futures.process import BrokenProcessPool

    from features.parallel import ordered_pool

    with pytest.raises(BrokenProcessPool), ordered_pool(2) as pmap:
        pmap(os._exit, [3, 3, 3, 3])


@pytest.mark.parametrize(("value", "expected"), [("1", 1), (" 1 ", 1), ("0", None), ("", None),
                                                 ("²", None), ("4,2", None), ("many", None)])
def test_step_cores_reads_only_a_positive_integer_share(monkeypatch, value, expected):
    from features.parallel import step_cores

    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert step_cores() == (expected or cores())


def test_short_steps_keep_their_fits_in_process_below_the_pool_threshold():
    """On the demo the fusion ablation and the analysis were slower in a pool (each worker imports torch or
    scikit-learn first): below POOL_MIN_ROWS galaxies they stay in the step's process unless told."""
    from features.parallel import POOL_MIN_ROWS, pool_workers

    assert pool_workers(None, 600) == 1
    assert pool_workers(None, POOL_MIN_ROWS) is None  # the step's cores
    assert pool_workers(2, 600) == 2  # an explicit choice stands
