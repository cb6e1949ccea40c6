"""Conformal sets (models/conformal.py, MAPIE): coverage, class-conditional vs marginal, small data, storage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from toy_warehouse import fill_toy_warehouse

from models.calibration import apply_temperature
from models.config import make_config
from models.conformal import Conformalizer, clopper_pearson, set_report, val_halves
from stages.predict import predict_all
from stages.training import train_model
from stages.versions import get_model


def _hard_rare(n, seed):
    """Classes 0, 1 common and easy; class 2 rare (10%) and hard: marginal sets under-cover it."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.45, 0.45, 0.10])
    signal = np.array([4.0, 4.0, 0.8])[y]
    z = rng.normal(0, 1, (n, 3))
    z[np.arange(n), y] += signal
    return apply_temperature(z, 1.0), y


def test_class_conditional_sets_cover_the_rare_hard_class_marginal_ones_do_not():
    p_cal, y_cal = _hard_rare(3000, 0)
    p_test, y_test = _hard_rare(3000, 1)
    for score in ("lac",):
        c = Conformalizer.fit(p_cal, y_cal, alpha=0.1, score=score, names=["a", "b", "rare"])
        assert c.flags == []
        marginal = set_report(c.marginal_sets(p_test), y_test, ["a", "b", "rare"])
        classwise = set_report(c.class_sets(p_test), y_test, ["a", "b", "rare"])
        assert marginal["coverage"] == pytest.approx(0.9, abs=0.025)
        assert marginal["per_class"]["rare"]["coverage"] < 0.8  # what the overall number hides
        for name in ("a", "b", "rare"):  # ~300 rare galaxies each side: coverage sd ~0.025 around >= 0.9
            d = classwise["per_class"][name]
            assert d["coverage_ci"][1] >= 0.88 and d["coverage"] >= 0.84, (score, name, d)
        assert classwise["per_class"]["rare"]["coverage"] > marginal["per_class"]["rare"]["coverage"] + 0.05
        assert classwise["mean_size"] > marginal["mean_size"]  # the price of per-class coverage


def test_aps_marginal_works_and_class_conditional_aps_is_refused_by_mapie_and_said():
    p_cal, y_cal = _hard_rare(2000, 0)
    p_test, y_test = _hard_rare(2000, 1)
    c = Conformalizer.fit(p_cal, y_cal, alpha=0.1, score="aps")
    # MAPIE includes the last label by default (include_last_label=True): conservative, not exact
    assert set_report(c.marginal_sets(p_test), y_test, ["a", "b", "c"])["coverage"] >= 0.88
    assert c.class_sets(p_test) is None and "only valid score is 'lac'" in c.unavailable["class_conditional"]
    binary = Conformalizer.fit(p_cal[:, :2] / p_cal[:, :2].sum(1, keepdims=True), np.minimum(y_cal, 1),
                               alpha=0.1, score="aps")
    assert binary.marginal_sets(p_test[:, :2]) is None and "marginal" in binary.unavailable


@pytest.mark.filterwarnings("ignore:WARNING. your conformalization dataset has less labels")
def test_class_absent_or_too_small_is_flagged_and_always_included():
    p, y = _hard_rare(400, 2)
    keep = y != 2
    c = Conformalizer.fit(p[keep], y[keep], alpha=0.1, names=["a", "b", "rare"])
    assert any("'rare' is absent" in f for f in c.flags)
    assert c.class_sets(p)[:, 2].all() and c.class_sets(p).shape == (400, 3)
    few = np.concatenate([np.flatnonzero(y == 0), np.flatnonzero(y == 1), np.flatnonzero(y == 2)[:4]])
    c2 = Conformalizer.fit(p[few], y[few], alpha=0.1, names=["a", "b", "rare"])
    assert any("'rare': 4 conformalization galaxies < 11" in f for f in c2.flags)
    tiny = Conformalizer.fit(p[:5], y[:5], alpha=0.1)
    assert tiny.marginal_sets(p).all() and any(f.startswith("marginal") for f in tiny.flags)
    with pytest.raises(ValueError, match="alpha"):
        Conformalizer.fit(p, y, alpha=1.5)


def test_set_report_numbers():
    sets = np.array([[1, 0], [1, 1], [0, 0], [0, 1]], dtype=bool)
    r = set_report(sets, np.array([0, 0, 1, 1]), ["x", "y"])
    assert (r["coverage"], r["mean_size"], r["empty"], r["singleton"]) == (0.75, 1.0, 0.25, 0.5)
    assert r["per_class"]["y"]["coverage"] == 0.5 and r["per_class"]["x"]["mean_size"] == 1.5


def test_clopper_pearson_matches_scipy():
    for k, n in ((0, 10), (7, 10), (10, 10), (27, 30)):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert clopper_pearson(k, n) == pytest.approx((ci.low, ci.high))


def test_clopper_pearson_is_the_beta_quantile_interval_it_replaced():
    """binomtest's exact interval equals the beta quantiles computed here before (issue 22, step 5)."""
    from scipy.stats import beta

    for k, n in ((0, 10), (1, 11), (7, 10), (10, 10), (27, 30), (512, 600)):
        low = 0.0 if k == 0 else beta.ppf(0.025, k, n - k + 1)
        high = 1.0 if k == n else beta.ppf(0.975, k + 1, n - k)
        assert clopper_pearson(k, n) == pytest.approx((low, high), rel=1e-9, abs=1e-12)
    assert all(np.isnan(clopper_pearson(0, 0)))


def test_val_halves_are_group_aware_stratified_and_seeded():
    ids = [f"g{i}" for i in range(40)]
    y = np.arange(40) % 2
    groups = [None] * 40
    groups[0] = groups[2] = groups[4] = "trio"
    h = val_halves(ids, y, groups, seed=0)
    assert len({bool(h[i]) for i in (0, 2, 4)}) == 1
    assert abs(int(h[y == 0].sum()) - 10) <= 2 and abs(int(h[y == 1].sum()) - 10) <= 1
    assert (val_halves(ids, y, groups, seed=0) == h).all() and (val_halves(ids, y, groups, seed=1) != h).any()


def test_training_run_stores_conformal_sets_per_galaxy(warehouse):
    gal, _ = fill_toy_warehouse(warehouse, n=200, size=16, seed=4, separation=0.25)
    out = train_model(warehouse, "dinov2_probe", make_config("dinov2_probe", encoder="random_vits14",
                                                             gate_resamples=200))
    conf = out.conformal
    assert conf["alpha"] == 0.1 and 0 < conf["n_conformalize"] < out.n["val"]
    assert set(conf["scores"]) == {"lac", "aps"}
    assert conf["scores"]["lac"]["class_conditional"]["n"] == out.n["test"]
    import json

    assert json.loads(get_model(warehouse, "dinov2_probe", 1)["metrics_json"])["conformal"]["alpha"] == 0.1
    predict_all(warehouse, gated=False)
    rows = warehouse.read("predictions").to_pylist()
    assert all(r["conformal_set_size"] == len(r["conformal_set"]) for r in rows)
    assert all(set(r["conformal_set"]) <= set(out.names) and r["marginal_set"] is not None for r in rows)
    test = [r for r in rows if r["split"] == "test"]
    name_of = dict(zip(gal["galaxy_id"], gal["label_name"]))
    covered = np.mean([name_of[r["galaxy_id"]] in r["conformal_set"] for r in test])
    assert covered == pytest.approx(conf["scores"]["lac"]["class_conditional"]["coverage"])
    if out.passed_gate:
        view = warehouse.sql("SELECT galaxy_id, conformal_set_size FROM uncertain_galaxies").to_dicts()
        assert len(view) == sum(r["conformal_set_size"] > 1 for r in rows)
        assert all(v["conformal_set_size"] > 1 for v in view)
