"""The search planner: route vs selectivity, exact routes equal brute force, ANN routes, appended rows, the CLI plan."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from test_search import ENC, _fsl, brute_force, clustered, make_warehouse

from warehouse import WarehouseError, search
from warehouse.schemas.embeddings import embedding_spec


def _plan(**kw):
    return search.plan_route(**kw)[0]


def test_route_follows_selectivity_and_the_index(monkeypatch):
    monkeypatch.setattr(search.planner, "EXACT_SUBSET_MAX", 20_000)
    monkeypatch.setattr(search.planner, "POSTFILTER_MIN_FRACTION", 0.05)
    n = 1_000_000
    assert _plan(rows=n, allowed=None, indexed=False) == "exact"
    assert _plan(rows=n, allowed=None, indexed=True) == "ann"
    assert _plan(rows=n, allowed=None, indexed=True, exact=True) == "exact"
    assert _plan(rows=n, allowed=500_000, indexed=False) == "exact_subset"  # no index: always exact
    assert _plan(rows=n, allowed=10_000, indexed=True) == "exact_subset"  # 1 %
    assert _plan(rows=n, allowed=20_000, indexed=True) == "exact_subset"
    assert _plan(rows=n, allowed=30_000, indexed=True) == "ann_prefilter"  # 3 %: between the thresholds
    assert _plan(rows=n, allowed=100_000, indexed=True) == "ann_postfilter"  # 10 %
    assert _plan(rows=n, allowed=500_000, indexed=True) == "ann_postfilter"  # 50 %
    assert _plan(rows=n, allowed=500_000, indexed=True, exact=True) == "exact_subset"


@pytest.mark.parametrize("fraction", [0.02, 0.2, 0.6, 1.0])
def test_exact_over_subset_equals_brute_force(warehouse, fraction):
    """Gathered (small subsets) and masked (most of the table) exact routes give the brute-force answer."""
    n = 300
    ids, vecs = make_warehouse(warehouse, n=n, vectors=clustered(n))
    table = f"embeddings_{ENC}"
    rng = np.random.default_rng(1)
    allowed = np.zeros(n, bool)
    allowed[rng.choice(n, size=max(1, int(fraction * n)), replace=False)] = True
    allowed_ids = [ids[i] for i in np.flatnonzero(allowed)]
    for qi in (0, 7, 123):
        hits, plan = search.knn_plan(warehouse, table, vecs[qi], 10, allowed_ids)
        assert plan.route == "exact_subset" and plan.allowed == allowed.sum()
        assert plan.selectivity == pytest.approx(allowed.mean())
        want = brute_force(vecs, vecs[qi], 10, allowed)[:allowed.sum()]
        assert hits.column("galaxy_id").to_pylist() == [ids[j] for j in want]
        v = vecs[want] / np.linalg.norm(vecs[want], axis=1, keepdims=True)
        np.testing.assert_allclose(hits.column("distance").to_numpy(),
                                   1 - v @ (vecs[qi] / np.linalg.norm(vecs[qi])), atol=1e-5)
    # the same answer as an Arrow array of ids (what the SQL prefilter hands over)
    arr, _ = search.knn_plan(warehouse, table, vecs[0], 10, pa.array(allowed_ids))
    assert arr.column("galaxy_id").to_pylist() == [ids[j] for j in brute_force(vecs, vecs[0], 10, allowed)][:len(arr)]


@pytest.fixture
def indexed(warehouse):
    ids, vecs = make_warehouse(warehouse, n=2000, vectors=clustered(2000, clusters=40))
    report = search.build_index(warehouse, ENC, min_rows=1000)
    assert report.built and report.action == "built"
    return warehouse, ids, vecs


def test_every_route_on_an_indexed_table(indexed, monkeypatch):
    wh, ids, vecs = indexed
    table = f"embeddings_{ENC}"
    allowed = np.array([i % 3 == 2 for i in range(len(ids))])  # a third: label_name = 'Edge-on'
    allowed_ids = [ids[i] for i in np.flatnonzero(allowed)]
    truth = [ids[j] for j in brute_force(vecs, vecs[11], 10, allowed)]
    for route in ("exact_subset", "ann_prefilter", "ann_postfilter"):
        hits, plan = search.knn_plan(wh, table, vecs[11], 10, allowed_ids, route=route)
        got = hits.column("galaxy_id").to_pylist()
        assert plan.route == route and plan.indexed and plan.candidates >= 10
        assert set(got) <= set(allowed_ids) and len(set(got) & set(truth)) >= 9
    hits, plan = search.knn_plan(wh, table, vecs[11], 10)
    assert plan.route == "ann" and hits.column("galaxy_id")[0].as_py() == ids[11]
    # the planner's own choice on this table, thresholds moved around the third the filter keeps
    where = "label_name = 'Edge-on'"
    monkeypatch.setattr(search.planner, "EXACT_SUBSET_MAX", 0)
    for post, route in ((0.05, "ann_postfilter"), (0.5, "ann_prefilter")):
        monkeypatch.setattr(search.planner, "POSTFILTER_MIN_FRACTION", post)
        found = search.similar_plan(wh, ids[11], k=10, where=where, encoder=ENC)
        assert found.plan.route == route and found.plan.allowed == allowed.sum()
        assert set(found.neighbours["label_name"].to_list()) == {"Edge-on"}
    with pytest.raises(WarehouseError, match="unknown route"):
        search.knn_plan(wh, table, vecs[0], 10, route="fast")
    with pytest.raises(WarehouseError, match="filtered"):
        search.knn_plan(wh, table, vecs[0], 10, route="ann_postfilter")


def test_post_filter_that_keeps_too_few_falls_back_to_exact(indexed):
    """A filter whose rows are all far from the query: the over-fetch keeps < k, the subset is searched exactly."""
    wh, ids, vecs = indexed
    table = f"embeddings_{ENC}"
    d = 1 - vecs @ vecs[0] / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(vecs[0]))
    far = np.argsort(d)[-700:]  # the 35 % farthest from the query
    hits, plan = search.knn_plan(wh, table, vecs[0], 10, [ids[i] for i in far], route="ann_postfilter")
    allowed = np.zeros(len(ids), bool)
    allowed[far] = True
    assert plan.route == "exact_subset" and "post-filter kept" in plan.reason
    assert hits.column("galaxy_id").to_pylist() == [ids[j] for j in brute_force(vecs, vecs[0], 10, allowed)]


def _append(wh, n_old: int, vecs: np.ndarray) -> list[str]:
    n = len(vecs)
    new_ids = [f"demo:{n_old + i:06d}" for i in range(n)]
    spec = embedding_spec(ENC, vecs.shape[1])
    wh.upsert(spec.name, pa.table({
        "galaxy_id": new_ids, "shard": ["demo-00001"] * n, "encoder": [ENC] * n, "weights_sha256": ["0" * 64] * n,
        "weights_origin": ["random"] * n, "flags": pa.array([0] * n, pa.int64()), "vector": _fsl(vecs),
        "patch_mean": _fsl(vecs)}), spec=spec)
    return new_ids


def test_rows_appended_after_the_index_are_found_before_and_after_update(indexed):
    wh, ids, _ = indexed
    table = f"embeddings_{ENC}"
    new = clustered(200, clusters=40, seed=7) * 1.5  # a new shard, embedded after the index was built
    new_ids = _append(wh, len(ids), new)
    state = search.index_state(wh, ENC)
    assert state["indexed"] and state["unindexed_rows"] == 200
    for i in (0, 99, 199):  # Lance searches the unindexed fragment flat and merges
        hits, plan = search.knn_plan(wh, table, new[i], 5)
        assert plan.route == "ann" and plan.unindexed_rows == 200 and plan.rows == 2200
        assert hits.column("galaxy_id")[0].as_py() == new_ids[i]
        assert hits.column("distance")[0].as_py() == pytest.approx(0.0, abs=1e-5)
    report = search.update_index(wh, ENC, min_rows=1000)
    assert report.action == "updated" and report.unindexed_before == 200
    assert search.index_state(wh, ENC)["unindexed_rows"] == 0
    for i in (0, 99, 199):
        hits, plan = search.knn_plan(wh, table, new[i], 5)
        assert plan.unindexed_rows == 0 and hits.column("galaxy_id")[0].as_py() == new_ids[i]
        assert hits.column("distance")[0].as_py() == pytest.approx(0.0, abs=1e-5)  # exact re-rank
    assert search.recall_at_k(wh, ENC, n_queries=20) >= 0.95
    assert search.update_index(wh, ENC, min_rows=1000).action == "up to date"
    more = _append(wh, len(ids) + 200, clustered(2400, clusters=40, seed=8))  # more than the table: retrain
    rebuilt = search.update_index(wh, ENC, min_rows=1000)
    assert rebuilt.action == "rebuilt" and rebuilt.unindexed_before == 2400
    assert search.index_state(wh, ENC)["unindexed_rows"] == 0 and search.knn_plan(wh, table, new[0], 1)[1].rows == 4600
    assert len(more) == 2400


def test_cli_similar_where_reports_its_route(warehouse, capsys):
    from service.cli import main

    ids, vecs = make_warehouse(warehouse)
    home = ["--home", str(warehouse.root)]
    where = "label_name = 'Round Smooth'"
    assert main([*home, "similar", ids[1], "-k", "3", "--where", where, "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["plan"]["route"] == "exact_subset" and out["plan"]["allowed"] == 20 and out["plan"]["rows"] == 60
    assert out["plan"]["selectivity"] == pytest.approx(1 / 3)
    allowed = np.array([i % 3 == 1 for i in range(60)])
    assert [r["galaxy_id"] for r in out["neighbours"]] == [ids[j] for j in brute_force(vecs, vecs[1], 3, allowed)]
    assert main([*home, "similar", ids[1], "-k", "3", "--where", where]) == 0
    assert "route exact_subset: 20 of 60 rows allowed (33.33 %)" in capsys.readouterr().out
    assert main([*home, "similar", ids[1], "-k", "3", "--where", "ra > 1000"]) == 1
    assert "route exact_subset: 0 of 60 rows allowed" in capsys.readouterr().err


def test_filter_cache_is_keyed_by_table_versions(warehouse):
    """The same where reuses its row positions until any table changes; then it is evaluated afresh."""
    from test_search import fill_rows

    from warehouse import ReadSession

    ids, vecs = make_warehouse(warehouse)
    where = "label_name = 'Edge-on'"
    session = ReadSession(warehouse, refresh_s=0)  # the owner of the cache; versions looked up every time
    first = search.similar_plan(session.snapshot(), ids[0], k=5, where=where, encoder=ENC)
    again = search.similar_plan(session.snapshot(), ids[3], k=5, where=where, encoder=ENC)
    assert not first.plan.filter_cached and again.plan.filter_cached and again.plan.allowed == 20
    relabel = ids[:3]  # three galaxies become edge-on: a new galaxies version
    warehouse.upsert("galaxies", fill_rows("galaxies", 3, galaxy_id=relabel, source=["demo"] * 3, native_id=relabel,
                                           shard=["demo-00000"] * 3, label_name=["Edge-on"] * 3, ra=[0.0, 1.0, 2.0]))
    after = search.similar_plan(session.snapshot(), ids[0], k=5, where=where, encoder=ENC)
    assert not after.plan.filter_cached and after.plan.allowed == 22  # ids[2] was edge-on already
    allowed = np.array([i % 3 == 2 or i < 3 for i in range(60)])
    assert after.neighbours["galaxy_id"].to_list() == [ids[j] for j in brute_force(vecs, vecs[0], 5, allowed)]


def test_embedding_index_asset_adds_appended_rows_to_the_index(indexed):
    """The Dagster asset (a real run) brings an index that no longer covers the table up to date."""
    import dagster as dg

    from dagster_project.defs.embeddings.assets import embedding_index
    from dagster_project.resources import WarehouseResource

    wh, ids, _ = indexed
    new_ids = _append(wh, len(ids), clustered(100, clusters=40, seed=9))
    config = {"ops": {"embedding_index": {"config": {"min_rows": 1000, "encoder": ENC}}}}
    result = dg.materialize([embedding_index], instance=dg.DagsterInstance.ephemeral(), run_config=config,
                            resources={"warehouse": WarehouseResource(root=str(wh.root))})
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
    entry = result.asset_materializations_for_node("embedding_index")[0].metadata["tables"].value[f"embeddings_{ENC}"]
    assert entry["action"] == "updated" and entry["unindexed_before"] == 100 and entry["recall_at_10"] >= 0.95
    assert search.index_state(wh, ENC)["unindexed_rows"] == 0 and len(new_ids) == 100
