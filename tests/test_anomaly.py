"""The anomaly, labels and ranking stages on a toy warehouse: tables, views, bad input, versions."""

from __future__ import annotations

import numpy as np
import pytest
from toy_warehouse import fill_toy_warehouse

from features.anomaly import AnomalyParams
from features.errors import InputError
from models.ranking import RankingParams
from stages.anomaly import score_anomalies, top_anomalies
from stages.labels import LabelIn, add_labels, latest_labels, read_label_csv
from stages.ranking import more_like_these, rank, ranked

PARAMS = AnomalyParams(n_components=8, n_estimators=50)


@pytest.fixture
def toy_gal(warehouse):
    gal, y = fill_toy_warehouse(warehouse, n=80, size=16, seed=1, separation=0.6)
    return warehouse, gal, np.asarray(y)


@pytest.fixture
def toy(toy_gal):
    wh, gal, y = toy_gal
    return wh, gal["galaxy_id"], y


def test_scores_are_stored_per_encoder_and_method_with_the_embeddings_version(toy) -> None:
    wh, _ids, _ = toy
    out = score_anomalies(wh, params=PARAMS)
    assert out.scored["random_vits14"]["rows"] == 80
    t = wh.sql_result("SELECT method, count(*) AS n, min(anomaly_rank) AS lo, max(anomaly_rank) AS hi, "
                      "min(embeddings_version) AS v FROM anomalies GROUP BY method ORDER BY method", limit=None).table
    assert t.column("method").to_pylist() == ["iforest", "knn"]
    assert t.column("n").to_pylist() == [80, 80]
    assert t.column("lo").to_pylist() == [0.0, 0.0] and t.column("hi").to_pylist() == [1.0, 1.0]
    assert t.column("v").to_pylist() == [wh.dataset("embeddings_random_vits14").version] * 2
    score_anomalies(wh, params=PARAMS)  # again: replaced, not doubled
    assert wh.count("anomaly_scores") == 160
    top = top_anomalies(wh, method="knn", limit=5)
    assert top.num_rows == 5 and top.column("anomaly_rank")[0].as_py() == 1.0


def test_morphometrics_can_join_the_vectors(toy_gal) -> None:
    from toy_warehouse import fill_toy_tabular

    wh, gal, y = toy_gal
    fill_toy_tabular(wh, gal, y, phot=False)
    out = score_anomalies(wh, methods=["knn"], params=PARAMS, with_morphometrics=True)
    assert out.with_morphometrics and wh.count("anomaly_scores") == 80


def test_labels_are_appended_and_the_newest_wins_without_touching_the_catalogue(toy) -> None:
    wh, ids, _ = toy
    before = wh.read("galaxies", columns=["galaxy_id", "label", "label_name"]).sort_by("galaxy_id")
    add_labels(wh, [LabelIn(ids[0], "interesting", 1.0, "ann"), LabelIn(ids[1], "interesting", 0.0, "ann")], "cli")
    add_labels(wh, [LabelIn(ids[0], "interesting", 0.0, "ann")], "page")
    add_labels(wh, [LabelIn(ids[0], "interesting", 1.0, "bob")], "api")
    assert wh.count("labels") == 4
    assert latest_labels(wh, "interesting", "ann") == {ids[0]: 0.0, ids[1]: 0.0}
    assert latest_labels(wh, "interesting")[ids[0]] == 1.0  # bob's is the newest of all
    assert wh.read("galaxies", columns=["galaxy_id", "label", "label_name"]).sort_by("galaxy_id").equals(before)
    view = wh.sql_result("SELECT count(*) AS n FROM latest_labels", limit=None).table.column("n")[0].as_py()
    assert view == 3


def test_bad_labels_are_refused_whole(toy, tmp_path) -> None:
    wh, ids, _ = toy
    with pytest.raises(InputError, match="no galaxy 'nope:1'; nothing was labelled"):
        add_labels(wh, [LabelIn(ids[0], "interesting"), LabelIn("nope:1", "interesting")], "cli")
    with pytest.raises(InputError, match="bad label name"):
        add_labels(wh, [LabelIn(ids[0], "")], "cli")
    with pytest.raises(InputError, match="unknown label source"):
        add_labels(wh, [LabelIn(ids[0], "x")], "email")
    with pytest.raises(InputError, match="not a finite"):
        add_labels(wh, [LabelIn(ids[0], "x", float("nan"))], "cli")
    assert not wh.exists("labels") or wh.count("labels") == 0
    csv = tmp_path / "l.csv"
    csv.write_text(f"galaxy_id,value\n{ids[0]},yes\n{ids[1]},maybe\n")
    with pytest.raises(InputError, match=r"l\.csv, row 3"):
        read_label_csv(csv, name="interesting")
    csv.write_text(f"galaxy_id,value,who\n{ids[0]},yes,cat\n{ids[1]},0,cat\n")
    add_labels(wh, read_label_csv(csv, name="interesting"), "import")
    assert latest_labels(wh, "interesting", "cat") == {ids[0]: 1.0, ids[1]: 0.0}


def test_rank_learns_a_class_and_records_what_it_used(toy) -> None:
    wh, ids, y = toy
    score_anomalies(wh, params=PARAMS)
    with pytest.raises(InputError, match="no labels named 'ring'"):
        rank(wh, "ring")
    cls = int(np.bincount(y).argmax())
    pos = [g for g, c in zip(ids, y, strict=True) if c == cls][:4]
    neg = [g for g, c in zip(ids, y, strict=True) if c != cls][:6]
    add_labels(wh, [LabelIn(g, "ring", 1.0, "ann") for g in pos] + [LabelIn(g, "ring", 0.0, "ann") for g in neg], "cli")
    out = rank(wh, "ring", who="ann", params=RankingParams(explore_every=0))
    assert out.n_labels == 10 and out.n_positive == 4 and out.rows == 80
    assert out.labels_version == wh.dataset("labels").version
    top = ranked(wh, "ring", who="ann", limit=8)
    label_of = dict(zip(ids, y, strict=True))
    hits = sum(label_of[g] == cls for g in top.column("galaxy_id").to_pylist())
    share = float(np.mean(y == cls))
    assert hits / 8 > share  # better than the class's share by chance
    assert top.column("position").to_pylist() == list(range(1, 9))
    stored = wh.sql_result("SELECT count(*) AS n, max(n_labels) AS k FROM rankings WHERE position = 0", limit=None).table
    assert stored.column("n")[0].as_py() == 10 and stored.column("k")[0].as_py() == 10
    # only positives: documented behaviour, a note, still a ranking
    add_labels(wh, [LabelIn(g, "keep", 1.0, "ann") for g in pos], "cli")
    assert "no model trained" in rank(wh, "keep", who="ann").note


def test_more_like_these_leaves_the_query_out_and_names_unknown_ids(toy) -> None:
    wh, ids, y = toy
    cls = int(np.bincount(y).argmax())
    pos = [g for g, c in zip(ids, y, strict=True) if c == cls][:5]
    found = more_like_these(wh, pos, k=5)
    got = found.column("galaxy_id").to_pylist()
    assert len(got) == 5 and not set(got) & set(pos)
    assert found.column("rank").to_pylist() == [1, 2, 3, 4, 5]
    with pytest.raises(InputError, match="'x:9'"):
        more_like_these(wh, [*pos, "x:9"])
    with pytest.raises(InputError, match="at least one positive"):
        more_like_these(wh, [], [pos[0]])
