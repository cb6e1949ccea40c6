"""The three leak paths of the split audit (issue 12), reproduced on the toy warehouse of models/toy.py.

A stale split set against today's duplicate groups, split sets of other fractions overwriting one
another, models and predictions labelled with a split set other than the one they trained on; plus
the split seed apart from the training seed and the bootstrap CI of every stored test score.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from dagster_project.defs.training.checks import leak_check
from models.baselines import balanced_accuracy_interval
from models.config import make_config
from models.errors import SplitError
from models.splits import split_content_hash, split_set_name
from models.toy import toy_embeddings, toy_images, toy_rows
from stages.predict import predict_all
from stages.trainers import latest_probe
from stages.training import build_splits, load_split, train_model
from stages.versions import get_model
from warehouse.schemas.embeddings import embedding_spec

ENCODER = "random_vits14"


def _write(wh, n=40, groups=None, embeddings=False, seed=1, separation=1.5):
    images, y = toy_images(n, 16, seed=seed)
    gal, img = toy_rows(images, y, groups=groups)
    wh.upsert("galaxies", pa.table(gal))
    wh.upsert("images", pa.table(img))
    if embeddings:
        vec, patch = toy_embeddings(y, 384, seed=seed, separation=separation)
        wh.upsert(f"embeddings_{ENCODER}", pa.table({
            "galaxy_id": gal["galaxy_id"], "shard": gal["shard"], "encoder": [ENCODER] * n,
            "weights_sha256": ["0" * 64] * n, "weights_origin": ["random init"] * n, "flags": [1 << 32] * n,
            "vector": list(vec), "patch_mean": list(patch)}), spec=embedding_spec(ENCODER, 384))
    return gal


def _probe_cfg(**kw):
    return make_config("dinov2_probe", encoder=ENCODER, gate_resamples=200, **kw)


def test_split_set_name_carries_seed_and_fractions():
    assert split_set_name("label", 0) == "label-s0-f70.15.15"
    assert split_set_name("ring", 3, (0.5, 0.25, 0.25)) == "ring-s3-f50.25.25"
    assert split_set_name("label", 0, (0.334, 0.333, 0.333)) == "label-s0-f33p4.33p3.33p3"
    with pytest.raises(SplitError, match="fractions"):
        split_set_name("label", 0, (0.5, 0.5, 0.5))


def test_content_hash_ignores_row_order_and_sees_one_moved_galaxy():
    ids, splits, labels = ["a", "b", "c"], ["train", "val", "test"], [0, 1, 0]
    h = split_content_hash(ids, splits, labels)
    assert h == split_content_hash(ids[::-1], splits[::-1], labels[::-1])
    assert h != split_content_hash(ids, ["train", "test", "val"], labels)


def test_stale_split_fails_the_leak_check_after_a_new_grouping(warehouse):
    """An ingest that groups a train galaxy with a test galaxy makes the stored split leak: refused."""
    gal = _write(warehouse)
    out = build_splits(warehouse, seed=0)
    assert leak_check(warehouse, out.split_name).passed
    stored = {r["galaxy_id"]: r["split"] for r in warehouse.read("splits").to_pylist()}
    train = next(g for g, s in stored.items() if s == "train")
    test = next(g for g, s in stored.items() if s == "test")
    groups = [("new-pair" if g in (train, test) else None) for g in gal["galaxy_id"]]
    gal["duplicate_group"] = groups
    warehouse.upsert("galaxies", pa.table(gal))
    assert warehouse.read("splits", where=f"galaxy_id = '{train}'").column("duplicate_group")[0].as_py() is None
    check = leak_check(warehouse, out.split_name)
    assert not check.passed and check.metadata["leaks"].value == 1
    with pytest.raises(SplitError, match=r"leaks under the current duplicate groups.*new-pair.*rebuild"):
        load_split(warehouse, out.split_name)
    before = warehouse.versions()
    with pytest.raises(SplitError, match="rebuild"):
        train_model(warehouse, "cnn", make_config("cnn", img_size=16, epochs=1, max_steps=1))
    assert warehouse.versions() == before and not warehouse.exists("models")
    rebuilt = build_splits(warehouse, seed=0)  # the rebuilt set keeps the new pair together
    assert leak_check(warehouse, rebuilt.split_name).passed
    assert rebuilt.content_hash != out.content_hash


def test_other_fractions_make_another_split_set(warehouse):
    _write(warehouse)
    a = build_splits(warehouse, seed=0)
    rows_a = warehouse.read("splits", where=f"split_name = '{a.split_name}'").sort_by("galaxy_id").to_pylist()
    b = build_splits(warehouse, seed=0, fractions=(0.5, 0.25, 0.25))
    assert (a.split_name, b.split_name) == ("label-s0-f70.15.15", "label-s0-f50.25.25")
    again = warehouse.read("splits", where=f"split_name = '{a.split_name}'").sort_by("galaxy_id").to_pylist()
    assert [(r["galaxy_id"], r["split"]) for r in again] == [(r["galaxy_id"], r["split"]) for r in rows_a]
    assert warehouse.count("splits") == 80 and a.content_hash != b.content_hash


def test_training_seed_does_not_move_the_split(warehouse):
    _write(warehouse, embeddings=True)
    one = train_model(warehouse, "dinov2_probe", _probe_cfg(seed=0))
    two = train_model(warehouse, "dinov2_probe", _probe_cfg(seed=7))
    other = train_model(warehouse, "dinov2_probe", _probe_cfg(split_seed=1))
    assert one.split_name == two.split_name == "label-s0-f70.15.15" and one.split_hash == two.split_hash
    assert other.split_name == "label-s1-f70.15.15" and other.split_hash != one.split_hash
    rows = [get_model(warehouse, "dinov2_probe", v) for v in (1, 2, 3)]
    assert [(r["seed"], r["split_seed"]) for r in rows] == [(0, 0), (7, 0), (0, 1)]


def test_models_and_predictions_keep_the_split_they_trained_on(warehouse):
    """Rebuilding a split set of the same name (new galaxies) neither relabels old predictions' split nor
    lets the fine-tune start from a probe fitted on another split set's content."""
    _write(warehouse, n=40, embeddings=True)
    first = train_model(warehouse, "dinov2_probe", _probe_cfg())
    row = get_model(warehouse, "dinov2_probe", 1)
    assert row["split_hash"] == first.split_hash and row["split_version"] == first.split_version
    trained = {r["galaxy_id"]: r["split"] for r in
               warehouse.read("splits", version=row["split_version"]).to_pylist()}
    _write(warehouse, n=60, embeddings=True, seed=2)  # a new ingest: 20 more galaxies, other labels
    rebuilt = build_splits(warehouse, seed=0)
    assert rebuilt.split_name == first.split_name and rebuilt.content_hash != first.split_hash
    split = load_split(warehouse, rebuilt.split_name)
    cfg = make_config("dinov2_finetune", encoder=ENCODER)
    assert latest_probe(warehouse, cfg, split) is None  # probe v1 fitted on the old content
    summary = predict_all(warehouse, gated=False)
    assert summary["dinov2_probe v1"]["split_from"] == "recorded version"
    preds = warehouse.read("predictions").to_pylist()
    assert {p["split_hash"] for p in preds} == {first.split_hash}
    assert {p["galaxy_id"]: p["split"] for p in preds if p["split"]} == trained
    assert sum(p["split"] is None for p in preds) == 20  # galaxies the model never saw


def test_registry_ci_recomputes_from_predictions(warehouse):
    _write(warehouse, n=80, embeddings=True, separation=0.1)
    out = train_model(warehouse, "dinov2_probe", _probe_cfg())
    row = get_model(warehouse, "dinov2_probe", 1)
    lo, hi = row["test_balanced_accuracy_low"], row["test_balanced_accuracy_high"]
    assert lo <= row["test_balanced_accuracy"] <= hi and hi - lo > 0
    predict_all(warehouse, gated=False)
    test = [p for p in warehouse.read("predictions").to_pylist() if p["split"] == "test"]
    truth = {r["galaxy_id"]: r["label"] for r in warehouse.read("galaxies").to_pylist()}
    index = {c: k for k, c in enumerate(out.classes)}
    y = np.array([index[truth[p["galaxy_id"]]] for p in test])
    pred = np.array([index[p["predicted_label"]] for p in test])
    point, low, high = balanced_accuracy_interval(y, pred, n_boot=200, seed=0)
    assert (point, low, high) == pytest.approx((row["test_balanced_accuracy"], lo, hi))
