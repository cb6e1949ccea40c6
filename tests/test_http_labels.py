"""Labels, anomalies, rankings and more-like-these over HTTP: in process, then a label storm of real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web extras (fastapi) are not installed")
from fastapi.testclient import TestClient
from toy_warehouse import fill_toy_warehouse

from features.anomaly import AnomalyParams
from service.http import Settings, create_app
from stages.anomaly import score_anomalies

TOKEN = "s3cret-token-for-tests-only"


@pytest.fixture
def toy(warehouse):
    gal, y = fill_toy_warehouse(warehouse, n=60, size=16, seed=4, separation=0.6)
    score_anomalies(warehouse, params=AnomalyParams(n_components=8, n_estimators=50))
    return warehouse, gal["galaxy_id"], np.asarray(y)


def test_label_rerank_and_more_like_in_process(toy) -> None:
    wh, ids, y = toy
    client = TestClient(create_app(Settings(home=wh.root)), raise_server_exceptions=False)
    before = client.get("/rankings/interesting", params={"limit": 10}).json()
    assert before["ranked"] is False and len(before["galaxies"]) == 10 and "no ranking yet" in before["note"]
    r = client.post(f"/galaxies/{ids[0]}/labels", json={"name": "interesting", "who": "ann"})
    assert r.status_code == 201 and r.json()["labels"] == 1
    assert client.post("/galaxies/nope:1/labels", json={"name": "interesting"}).status_code == 404
    bad = client.post(f"/galaxies/{ids[0]}/labels", json={"name": "in$teresting"})
    assert bad.status_code == 400 and "bad label name" in bad.json()["error"]
    assert client.post(f"/galaxies/{ids[0]}/labels", json={"name": "x", "value": "NaN"}).status_code in (400, 422)
    assert wh.count("labels") == 1
    cls = int(np.bincount(y).argmax())
    pos = [g for g, c in zip(ids, y, strict=True) if c == cls][:4]
    neg = [g for g, c in zip(ids, y, strict=True) if c != cls][:6]
    for g in pos + neg:
        client.post(f"/galaxies/{g}/labels", json={"name": "merger", "value": float(g in pos), "source": "page"})
    ranked = client.post("/rankings/merger", json={"limit": 10}).json()
    assert ranked["ranked"] is True and ranked["n_labels"] == 10
    order = [g["galaxy_id"] for g in ranked["galaxies"]]
    assert [g["position"] for g in ranked["galaxies"]] == list(range(1, 11)) and not set(order) & set(pos + neg)
    assert order != [g["galaxy_id"] for g in before["galaxies"]]
    assert client.get("/rankings/merger", params={"limit": 10}).json()["galaxies"] == ranked["galaxies"]
    empty = client.post("/rankings/nobody-used-this", json={})
    assert empty.status_code == 400 and "no labels named" in empty.json()["error"]
    like = client.post("/more-like", json={"positives": pos, "negatives": neg[:1], "k": 5}).json()
    assert len(like["galaxies"]) == 5 and not {g["galaxy_id"] for g in like["galaxies"]} & set(pos + neg[:1])
    unknown = client.post("/more-like", json={"positives": ["x:1"]})
    assert unknown.status_code == 400 and "'x:1'" in unknown.json()["error"]
    top = client.get("/anomalies", params={"method": "knn", "limit": 3}).json()
    assert [g["position"] for g in top["galaxies"]] == [1, 2, 3] and top["galaxies"][0]["score"] == 1.0


def test_labels_need_the_token_off_loopback(toy) -> None:
    wh, ids, _ = toy
    client = TestClient(create_app(Settings(home=wh.root, host="0.0.0.0", token=TOKEN)), raise_server_exceptions=False)
    assert client.post(f"/galaxies/{ids[0]}/labels", json={"name": "interesting"}).status_code == 401
    ok = client.post(f"/galaxies/{ids[0]}/labels", json={"name": "interesting"},
                     headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 201
    assert wh.count("labels") == 1


HTTP_CLIENT = textwrap.dedent("""
    import json, sys, httpx
    url, ids, who = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    got = []
    with httpx.Client(timeout=120) as c:
        for i, g in enumerate(ids):
            r = c.post(f"{url}/galaxies/{g}/labels", json={"name": "storm", "value": i % 2, "who": who})
            assert r.status_code == 201, r.text
            got.append(r.json()["label_id"])
    print(json.dumps(got))
""")

DIRECT_WRITER = textwrap.dedent("""
    import json, sys
    from stages.labels import LabelIn, add_labels
    from warehouse import Warehouse
    wh = Warehouse.open(sys.argv[1])
    got = []
    for g in json.loads(sys.argv[2]):
        got += add_labels(wh, [LabelIn(g, "storm", 1.0, sys.argv[3])], "cli")
    print(json.dumps(got))
""")


def test_a_label_storm_of_real_processes_loses_nothing(toy, tmp_path) -> None:
    from test_http_server import Server, _env

    wh, ids, _ = toy
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    srv = Server(wh.root, cwd)
    try:
        procs = [subprocess.Popen([sys.executable, "-c", HTTP_CLIENT, srv.url, json.dumps(ids[i::4][:12]), f"web{i}"],
                                  stdout=subprocess.PIPE, text=True, env=_env()) for i in range(4)]
        procs += [subprocess.Popen([sys.executable, "-c", DIRECT_WRITER, str(wh.root), json.dumps(ids[i::2][:12]),
                                    f"cli{i}"], stdout=subprocess.PIPE, text=True, env=_env()) for i in range(2)]
        written = []
        for p in procs:
            out, _ = p.communicate(timeout=300)
            assert p.returncode == 0
            written += json.loads(out)
    finally:
        srv.stop()
    assert len(written) == 6 * 12
    stored = wh.read("labels", columns=["label_id"]).column("label_id").to_pylist()
    assert sorted(stored) == sorted(written)
