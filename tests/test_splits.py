"""Splits: stratification, duplicate groups kept together, determinism, label columns, bad input."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from models.errors import LabelError, SplitError, TooFewClassesError
from models.labels import resolve_labels
from models.splits import LabelSet, check_no_leak, make_splits, usable_classes
from models.toy import toy_images, toy_rows
from stages.training import build_splits, load_split


def _catalogue(n_per_class=(150, 100, 50), pair_every=7, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])
    rng.shuffle(labels)
    ids = [f"g:{i:04d}" for i in range(len(labels))]
    groups = [None] * len(ids)
    # pairs of near-duplicates (same label), like the ~59 Galaxy10 repeats, and one mixed-label trio
    for i in range(0, len(ids) - 1, pair_every):
        j = next(k for k in range(i + 1, len(ids)) if labels[k] == labels[i])
        if groups[i] is None and groups[j] is None:
            groups[i] = groups[j] = f"dup{i}"
    groups[1] = groups[2] = groups[3] = "mixed"
    return ids, labels, groups


def test_stratified_fractions_per_class():
    ids, labels, groups = _catalogue()
    a = make_splits(ids, labels, groups, seed=0)
    for c, n in enumerate((150, 100, 50)):
        for name, frac in zip(("train", "val", "test"), (0.70, 0.15, 0.15)):
            got = int(((a.split == name) & (labels == c)).sum())
            assert abs(got - frac * n) <= 2, (c, name, got, frac * n)  # within one pair of the target


def test_duplicate_groups_never_straddle_splits():
    ids, labels, groups = _catalogue()
    a = make_splits(ids, labels, groups, seed=3)
    by_group: dict[str, set[str]] = {}
    for g, s in zip(groups, a.split):
        if g:
            by_group.setdefault(g, set()).add(s)
    assert len(by_group) > 20
    assert all(len(s) == 1 for s in by_group.values())
    assert check_no_leak(ids, list(a.split), groups) == []


def test_split_is_deterministic_and_order_independent():
    ids, labels, groups = _catalogue()
    a = make_splits(ids, labels, groups, seed=5)
    b = make_splits(ids, labels, groups, seed=5)
    assert list(a.split) == list(b.split)
    perm = np.random.default_rng(1).permutation(len(ids))
    c = make_splits([ids[i] for i in perm], labels[perm], [groups[i] for i in perm], seed=5)
    assert dict(zip(c.galaxy_ids, c.split)) == dict(zip(a.galaxy_ids, a.split))
    d = make_splits(ids, labels, groups, seed=6)
    assert list(d.split) != list(a.split)


def test_small_class_reaches_every_split():
    ids = [f"g:{i}" for i in range(23)]
    labels = np.array([0] * 20 + [1] * 3)
    a = make_splits(ids, labels, seed=0)
    assert set(a.split[labels == 1]) == {"train", "val", "test"}


def test_check_no_leak_reports_ids_and_groups():
    problems = check_no_leak(["a", "a", "b", "c"], ["train", "test", "train", "val"], [None, None, "g1", "g1"])
    assert any("galaxy a" in p for p in problems)
    assert any("duplicate group g1" in p for p in problems)


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.8, 0.3, 0.1), (1.0, 0.0, 0.0)])
def test_bad_fractions_raise(fractions):
    with pytest.raises(SplitError, match="fractions"):
        make_splits(["a", "b", "c"], [0, 1, 0], fractions=fractions)


def test_duplicate_ids_raise():
    with pytest.raises(SplitError, match="'a' appears more than once"):
        make_splits(["a", "a", "b"], [0, 1, 0])


# ------------------------------------------------------------------------------------- label columns
def test_extra_json_label_column_ring():
    extra = [json.dumps({"ring": v}) for v in (1, 0, 1, 0)] + [json.dumps({"other": 3}), None]
    lab = resolve_labels([f"g{i}" for i in range(6)], column="ring", extra_json=extra)
    assert lab.classes == (0, 1)
    assert lab.names == ("0", "1")
    assert lab.galaxy_ids == ["g0", "g1", "g2", "g3"]
    assert lab.n_unlabelled == 2
    named = resolve_labels([f"g{i}" for i in range(4)], column="ring", extra_json=extra[:4],
                           names={0: "no ring", 1: "ring"})
    assert named.names == ("no ring", "ring")


def test_text_labels_become_sorted_classes():
    extra = [json.dumps({"kind": k}) for k in ("spiral", "elliptical", "spiral")]
    lab = resolve_labels(["a", "b", "c"], column="kind", extra_json=extra)
    assert lab.names == ("elliptical", "spiral")
    assert lab.index.tolist() == [1, 0, 1]


def test_nan_label_names_the_row():
    extra = [json.dumps({"ring": 1}), json.dumps({"ring": 0}), '{"ring": NaN}']
    with pytest.raises(LabelError, match=r"row 2 \(g2\).*'ring' is NaN"):
        resolve_labels(["g0", "g1", "g2"], column="ring", extra_json=extra)


def test_non_integer_label_raises():
    with pytest.raises(LabelError, match=r"row 1 \(b\).*non-integer value 0.5"):
        resolve_labels(["a", "b"], column="ring", extra_json=['{"ring": 1}', '{"ring": 0.5}'])


def test_single_class_raises():
    with pytest.raises(TooFewClassesError, match="single class"):
        resolve_labels(["a", "b", "c"], column="label", label=[2, 2, None], label_name=["x", "x", None])


def test_no_labels_raises():
    with pytest.raises(LabelError, match="no galaxy has a value in label column 'ring'"):
        resolve_labels(["a", "b"], column="ring", extra_json=[None, '{"x": 1}'])


# ------------------------------------------------------------------------------------- in the warehouse
def _write(wh, n=40, extra=None, labels=None, groups=None):
    images, y = toy_images(n, 16, seed=1)
    if labels is not None:
        y = np.asarray(labels)
    gal, img = toy_rows(images, y, extra=extra, groups=groups)
    wh.upsert("galaxies", pa.table(gal))
    wh.upsert("images", pa.table(img))
    return gal


def test_build_splits_stores_rows_and_drops_stale_ones(warehouse):
    groups = [None] * 40
    groups[0] = groups[4] = "pair"
    gal = _write(warehouse, groups=groups)
    out = build_splits(warehouse, seed=0)
    assert out.split_name == "label-s0-f70.15.15"
    stored = warehouse.read("splits").to_pylist()
    assert len(stored) == 40 and {r["split"] for r in stored} == {"train", "val", "test"}
    pair = [r["split"] for r in stored if r["duplicate_group"] == "pair"]
    assert len(pair) == 2 and pair[0] == pair[1]
    # galaxy 0 loses its label: its row leaves the split set, the others stay
    gal["label"][0] = None
    warehouse.upsert("galaxies", pa.table(gal))
    before = warehouse.versions()["splits"]
    out2 = build_splits(warehouse, seed=0)
    assert out2.table_version == warehouse.versions()["splits"] == before + 1  # one commit, no half-replaced set
    assert sum(out2.counts.values()) == 39
    assert warehouse.count("splits", where="galaxy_id = 'toy:000000'") == 0
    split = load_split(warehouse, "label-s0-f70.15.15")
    assert split.names == ("round", "cigar", "ring", "pair")


def _hand_split(wh, n, split_of):
    """A hand-made split set 'hand': ``split_of(label, k)`` for the k-th galaxy of each class."""
    rows = wh.read("galaxies", columns=["galaxy_id", "label", "label_name"]).to_pylist()
    seen: dict[int, int] = {}
    split = []
    for r in rows:
        split.append(split_of(r["label"], seen.get(r["label"], 0)))
        seen[r["label"]] = seen.get(r["label"], 0) + 1
    wh.upsert("splits", pa.table({
        "galaxy_id": [r["galaxy_id"] for r in rows], "split_name": ["hand"] * n, "split": split,
        "label_column": ["label"] * n, "label": [r["label"] for r in rows],
        "label_name": [r["label_name"] for r in rows], "seed": [0] * n, "duplicate_group": [None] * n,
    }))


def test_class_missing_from_a_split_is_left_out_of_the_label_set(warehouse):
    _write(warehouse, n=12)
    # class 3 ('pair') only in train: val and test lack it
    _hand_split(warehouse, 12, lambda label, k: "train" if label == 3 else ("train", "val", "test")[k % 3])
    split = load_split(warehouse, "hand")
    assert split.names == ("round", "cigar", "ring") and split.classes == (0, 1, 2)
    assert split.excluded == {"pair": {"train": 3, "val": 0, "test": 0}}
    assert sum(len(v) for v in split.ids.values()) == 9
    assert all(set(split.y[s].tolist()) == {0, 1, 2} for s in ("train", "val", "test"))
    assert json.loads(split.excluded_json()) == [{"name": "pair", "train": 3, "val": 0, "test": 0}]


def test_fewer_than_two_usable_classes_is_a_clear_error(warehouse):
    _write(warehouse, n=12)
    _hand_split(warehouse, 12, lambda label, k: ("train", "val", "test")[k % 3] if label == 0 else "train")
    with pytest.raises(TooFewClassesError, match=r"kept: 'round'; left out: 'cigar' \(train 3, val 0, test 0\)") as exc:
        load_split(warehouse, "hand")
    assert set(exc.value.excluded) == {"cigar", "ring", "pair"}


def test_usable_classes_keeps_only_classes_in_every_split():
    splits = ["train", "val", "test", "train", "train", "val", "train"]
    labels = [0, 0, 0, 1, 1, 1, 2]
    rule = usable_classes(splits, labels)
    assert rule.kept == (0,)
    assert rule.excluded == {1: {"train": 2, "val": 1, "test": 0}, 2: {"train": 1, "val": 0, "test": 0}}
    assert usable_classes(splits, labels, min_per_split=2).kept == ()
    assert usable_classes([], []) == LabelSet(kept=(), excluded={})


def test_build_splits_reports_the_classes_the_rule_will_leave_out(warehouse):
    _write(warehouse, n=42, labels=[0, 1, 2] * 13 + [3, 3, 3][:2] + [0])
    out = build_splits(warehouse)
    assert set(out.excluded) == {"pair"} and sum(out.excluded["pair"].values()) == 2


def test_build_splits_with_nan_ring_leaves_warehouse_unchanged(warehouse):
    extra = [{"ring": i % 2} for i in range(20)]
    extra[7] = {"ring": float("nan")}
    _write(warehouse, n=20, extra=extra)
    with pytest.raises(LabelError, match=r"row 7 \(toy:000007\)"):
        build_splits(warehouse, label_column="ring")
    assert not warehouse.exists("splits")
