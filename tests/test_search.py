"""Lookalike search: exact and ANN, prefilters over galaxy features, the index, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from warehouse import SQLError, WarehouseError, schemas, search
from warehouse.schemas.embeddings import embedding_spec

DIM = 32
ENC = "test_search_d32"
LABELS = ("Barred Spiral", "Round Smooth", "Edge-on")


def _fsl(m: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(m, np.float32).ravel()), m.shape[1])


def clustered(n: int, dim: int = DIM, clusters: int = 20, spread: float = 0.15, seed: int = 0) -> np.ndarray:
    """Seeded Gaussian blobs around random unit centres (the structure embeddings of a survey have)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return (centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, dim)) / np.sqrt(dim)).astype(np.float32)


def _required_default(t: pa.DataType):
    if pa.types.is_string(t):
        return ""
    if pa.types.is_boolean(t):
        return True
    return 0


def fill_rows(table: str, n: int, **columns) -> pa.Table:
    """Rows of a registered table: given columns, nulls where allowed, neutral values elsewhere."""
    spec = schemas.get(table)
    data = {f.name: columns.get(f.name, [None if f.nullable else _required_default(f.type)] * n) for f in spec.columns}
    return pa.table({f.name: pa.array(data[f.name], f.type) for f in spec.columns})


def make_warehouse(wh, n: int = 60, vectors: np.ndarray | None = None, photometry: bool = True):
    ids = [f"demo:{i:06d}" for i in range(n)]
    vecs = clustered(n) if vectors is None else vectors
    wh.upsert("galaxies", fill_rows("galaxies", n, galaxy_id=ids, source=["demo"] * n, native_id=ids,
                                   shard=["demo-00000"] * n, label_name=[LABELS[i % 3] for i in range(n)],
                                   ra=[float(i) for i in range(n)]))
    if photometry:
        wh.upsert("photometry", fill_rows("photometry", n, galaxy_id=ids, g_r=[i / n for i in range(n)],
                                         shard=["demo-00000"] * n, source=["demo"] * n))
    spec = embedding_spec(ENC, vecs.shape[1])
    wh.upsert(spec.name, pa.table({
        "galaxy_id": ids, "shard": ["demo-00000"] * n, "encoder": [ENC] * n, "weights_sha256": ["0" * 64] * n,
        "weights_origin": ["random"] * n, "flags": pa.array([0] * n, pa.int64()), "vector": _fsl(vecs),
        "patch_mean": _fsl(vecs),
    }), spec=spec)
    return ids, vecs


def brute_force(vecs: np.ndarray, q: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[int]:
    d = 1 - vecs @ q / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(q))
    if allowed is not None:
        d = np.where(allowed, d, np.inf)
    return list(np.argsort(d, kind="stable")[:k])


def test_a_galaxy_is_its_own_nearest_neighbour(warehouse):
    ids, vecs = make_warehouse(warehouse)
    for i in (0, 17, 59):
        res = search.similar(warehouse, ids[i], k=5, encoder=ENC)
        assert res["rank"].to_list() == [1, 2, 3, 4, 5]
        assert res["galaxy_id"][0] == ids[i]
        assert res["distance"][0] == pytest.approx(0.0, abs=1e-6)
        assert res["distance"].is_sorted()
        assert set(res["galaxy_id"].to_list()) == {ids[j] for j in brute_force(vecs, vecs[i], 5)}
        assert {"label_name", "ra", "g_r"} <= set(res.columns)  # joined features


def test_features_query_uses_the_view_or_joins_per_galaxy_tables():
    from types import SimpleNamespace

    assert search.features_query(SimpleNamespace(views=["galaxy_features"], relations=[])) == (
        "SELECT * FROM galaxy_features")
    sql = search.features_query(SimpleNamespace(views=[], relations=["galaxies", "photometry", "morphometrics"]))
    assert 'AS "photometry_flags"' in sql and "LEFT JOIN photometry" in sql
    assert "morphometrics" not in sql or schemas.get("morphometrics").keys == ("galaxy_id",)


def test_exclude_query_and_vector_query(warehouse):
    ids, vecs = make_warehouse(warehouse)
    res = search.similar(warehouse, ids[3], k=4, encoder=ENC, exclude_query=True)
    assert ids[3] not in res["galaxy_id"].to_list() and res.height == 4
    by_vec = warehouse.similar(vecs[3], k=5, encoder=ENC)  # the Warehouse method delegates here
    assert by_vec["galaxy_id"].to_list()[1:] == res["galaxy_id"].to_list()


def test_where_is_applied_before_the_k_nearest(warehouse):
    ids, vecs = make_warehouse(warehouse)
    where = "label_name = 'Round Smooth' AND g_r > 0.3"
    res = search.similar(warehouse, ids[0], k=6, where=where, encoder=ENC)
    assert res.height == 6
    assert set(res["label_name"].to_list()) == {"Round Smooth"} and (res["g_r"] > 0.3).all()
    allowed = np.array([(i % 3 == 1) and (i / 60 > 0.3) for i in range(60)])
    assert res["galaxy_id"].to_list() == [ids[j] for j in brute_force(vecs, vecs[0], 6, allowed)]


def test_where_through_lancedb_prefilter_matches_numpy(warehouse, monkeypatch):
    ids, _ = make_warehouse(warehouse)
    where = "label_name <> 'Edge-on'"
    exact = search.similar(warehouse, ids[5], k=7, where=where, encoder=ENC)
    monkeypatch.setattr(search.planner, "EXACT_SUBSET_MAX", 0)  # force the `galaxy_id IN (...)` prefilter path
    lance = search.similar(warehouse, ids[5], k=7, where=where, encoder=ENC)
    assert lance["galaxy_id"].to_list() == exact["galaxy_id"].to_list()
    np.testing.assert_allclose(lance["distance"].to_numpy(), exact["distance"].to_numpy(), atol=1e-5)


def test_where_matching_nothing_and_bad_where(warehouse):
    ids, _ = make_warehouse(warehouse)
    assert search.similar(warehouse, ids[0], where="ra > 1000", encoder=ENC).height == 0
    with pytest.raises(SQLError):
        search.similar(warehouse, ids[0], where="no_such_column = 1", encoder=ENC)
    for where in ("1=1; DROP TABLE galaxies", "1=1) UNION SELECT galaxy_id FROM galaxies --"):
        with pytest.raises(SQLError, match="one SQL expression"):
            search.similar(warehouse, ids[0], where=where, encoder=ENC)


def test_where_obeys_the_limits_timeout(warehouse):
    """A slow ``where`` is interrupted after the caller's timeout, not DuckDB's 60 s default (issue 23 item 4)."""
    import time

    from warehouse.sql_engine import SQLLimits

    ids, _ = make_warehouse(warehouse)
    slow = "(SELECT count(*) FROM range(1000000) a, range(1000000) b) > 0"
    start = time.monotonic()
    with pytest.raises(SQLError, match=r"0\.5 s timeout"):
        search.similar_plan(warehouse, ids[0], where=slow, encoder=ENC, limits=SQLLimits(timeout_s=0.5, threads=1))
    assert time.monotonic() - start < 10
    fast = search.similar_plan(warehouse, ids[0], k=3, where="ra < 10", encoder=ENC, limits=SQLLimits(timeout_s=0.5))
    assert fast.neighbours.height == 3


def test_where_is_bound_as_an_expression_not_pasted(warehouse):
    """A semicolon inside a string literal is data; the filter still selects exactly the matching galaxies."""
    ids, vecs = make_warehouse(warehouse)
    warehouse.upsert("galaxies", fill_rows("galaxies", 2, galaxy_id=ids[:2], source=["demo"] * 2, native_id=ids[:2],
                                           shard=["demo-00000"] * 2, label_name=["a;b", "a;b"], ra=[0.0, 1.0]))
    res = search.similar(warehouse, ids[5], k=5, where="label_name = 'a;b'", encoder=ENC)
    assert sorted(res["galaxy_id"].to_list()) == ids[:2]
    assert res["galaxy_id"].to_list() == [ids[j] for j in brute_force(vecs, vecs[5], 2, np.arange(60) < 2)]


def test_errors_name_the_problem(warehouse):
    with pytest.raises(WarehouseError, match="no embeddings"):
        search.similar(warehouse, "demo:000000")
    make_warehouse(warehouse)
    with pytest.raises(WarehouseError, match="demo:999999"):
        search.similar(warehouse, "demo:999999", encoder=ENC)
    with pytest.raises(WarehouseError, match="32-d"):
        search.similar(warehouse, np.ones(5), encoder=ENC)
    with pytest.raises(WarehouseError, match="dinov2_vitb14"):
        search.similar(warehouse, "demo:000000", encoder="dinov2_vitb14")


def test_without_galaxies_table_results_have_no_features(warehouse):
    spec = embedding_spec(ENC, DIM)
    vecs = clustered(10)
    warehouse.upsert(spec.name, pa.table({
        "galaxy_id": [f"x:{i}" for i in range(10)], "shard": ["x-00000"] * 10, "encoder": [ENC] * 10,
        "weights_sha256": ["0"] * 10, "weights_origin": ["random"] * 10, "flags": pa.array([0] * 10, pa.int64()),
        "vector": _fsl(vecs), "patch_mean": _fsl(vecs)}), spec=spec)
    res = search.similar(warehouse, "x:4", k=3)
    assert res.columns == ["rank", "galaxy_id", "distance"] and res["galaxy_id"][0] == "x:4"


@pytest.mark.parametrize("params", [search.IndexParams("IVF_PQ", num_partitions=16, num_sub_vectors=4),
                                    search.default_index_params(2000, DIM)], ids=["IVF_PQ", "default"])
def test_ann_index_recall_on_clustered_data(warehouse, monkeypatch, params):
    ids, vecs = make_warehouse(warehouse, n=2000, vectors=clustered(2000, clusters=40))
    small = search.build_index(warehouse, ENC, min_rows=5000)
    assert not small.built and small.search == "exact"
    report = search.build_index(warehouse, ENC, min_rows=1000, params=params)
    assert report.built and report.index_bytes > 0
    assert search.index_state(warehouse, ENC)["indexed"]
    assert search.recall_at_k(warehouse, ENC, n_queries=30, k=10) >= 0.95
    res = search.similar(warehouse, ids[11], k=10, encoder=ENC)  # through the index
    assert res["galaxy_id"][0] == ids[11]
    where = "label_name = 'Edge-on'"  # a third of the table: over-fetch + post-filter, then the IN prefilter
    allowed = np.array([i % 3 == 2 for i in range(2000)])
    truth = [ids[j] for j in brute_force(vecs, vecs[11], 10, allowed)]
    monkeypatch.setattr(search.planner, "EXACT_SUBSET_MAX", 0)
    for post in (0.05, 2.0):
        monkeypatch.setattr(search.planner, "POSTFILTER_MIN_FRACTION", post)
        got = search.similar(warehouse, ids[11], k=10, where=where, encoder=ENC)["galaxy_id"].to_list()
        assert len(set(got) & set(truth)) >= 9 and set(got) <= {ids[j] for j in np.flatnonzero(allowed)}
    dropped = search.build_index(warehouse, ENC, min_rows=10_000)  # table "shrank" below the threshold
    assert "stale index dropped" in dropped.reason and not search.index_state(warehouse, ENC)["indexed"]


# ------------------------------------------------------------------------------------ CLI
def test_cli_similar_prints_and_draws_a_montage(warehouse, tmp_path, capsys):
    from service.cli import main
    from warehouse.images import encode_image

    ids, _ = make_warehouse(warehouse, n=12)
    rng = np.random.default_rng(0)
    imgs = [encode_image(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)) for _ in ids]
    warehouse.upsert("images", fill_rows("images", len(ids), galaxy_id=ids, shard=["demo-00000"] * 12,
                                         encoding=[e for e, _ in imgs], data=[d for _, d in imgs],
                                         height=[16] * 12, width=[16] * 12, channels=[3] * 12,
                                         dtype=["uint8"] * 12, bands=["grz"] * 12, image_kind=["rgb"] * 12))
    out = tmp_path / "montage.png"
    rc = main(["--home", str(warehouse.root), "similar", ids[2], "-k", "4", "--encoder", ENC,
               "--where", "label_name = 'Edge-on'", "--montage", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and ids[2] in text and "distance" in text
    assert out.stat().st_size > 1000
    rc = main(["--home", str(warehouse.root), "similar", "demo:nope", "--encoder", ENC])
    assert rc == 2 and "demo:nope" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_embed_then_similar_by_image(warehouse, tmp_path, capsys, monkeypatch):
    """`embed` with the random baseline (offline), then `similar --image` finds the same galaxy at ~0."""
    from PIL import Image

    from service.cli import main
    from warehouse.images import encode_image

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.delenv("ASTROVISION_WEIGHTS_VIT_SMALL_PATCH14_DINOV2_LVD142M", raising=False)
    monkeypatch.delenv("ASTROVISION_WEIGHTS_DIR", raising=False)
    n = 4
    ids = [f"demo:{i:06d}" for i in range(n)]
    rng = np.random.default_rng(1)
    raw = [rng.integers(0, 255, (24, 24, 3), dtype=np.uint8) for _ in ids]
    imgs = [encode_image(im) for im in raw]
    warehouse.upsert("galaxies", fill_rows("galaxies", n, galaxy_id=ids, source=["demo"] * n, native_id=ids,
                                          shard=["demo-00000"] * n))
    warehouse.upsert("images", fill_rows("images", n, galaxy_id=ids, shard=["demo-00000"] * n,
                                        encoding=[e for e, _ in imgs], data=[d for _, d in imgs], height=[24] * n,
                                        width=[24] * n, channels=[3] * n, dtype=["uint8"] * n, bands=["grz"] * n,
                                        image_kind=["rgb"] * n))
    assert main(["--home", str(warehouse.root), "embed", "--quiet", "--no-download"]) == 0
    out = capsys.readouterr().out
    assert "random" in out and "exact search" in out
    assert "demo-00000: 4 vectors -> embeddings_random_vits14" in out
    from dagster_project.runner import instance_for

    runs = instance_for(warehouse).get_runs()  # a Dagster run per shard, then the index: named, checked
    assert sorted(r.job_name for r in runs) == ["embed_job", "embed_job"]
    assert main(["--home", str(warehouse.root), "embed", "--quiet", "--shard", "demo-00009"]) == 2
    assert "unknown shard(s) ['demo-00009']" in capsys.readouterr().err
    png = tmp_path / "query.png"
    Image.fromarray(raw[2]).save(png)
    assert main(["--home", str(warehouse.root), "similar", "--image", str(png), "-k", "2", "--format", "json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    rows = answer["neighbours"]
    assert answer["plan"]["route"] == "exact" and answer["plan"]["rows"] == n
    assert [r["rank"] for r in rows] == [1, 2] and rows[0]["galaxy_id"] == ids[2]
    assert rows[0]["distance"] == pytest.approx(0.0, abs=1e-5)  # float32 cosine of a vector with itself
    assert rows[1]["distance"] > 1e-3
