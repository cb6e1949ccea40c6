"""Temperature scaling and calibration scores (models/calibration.py), and their place in training runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import log_loss
from toy_warehouse import fill_toy_warehouse

from models.calibration import (
    apply_temperature,
    brier,
    calibrate,
    ece,
    fit_temperature,
    log_probs,
    nll,
    reliability_bins,
)
from models.config import make_config
from stages.predict import predict_all
from stages.training import train_model
from stages.versions import get_model


def _overconfident(n=4000, k=4, true_t=2.5, seed=0):
    """Labels drawn from softmax(z / true_t) while the model reports softmax(z): overconfident by true_t."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, k))
    p_true = apply_temperature(z, true_t)
    y = np.array([rng.choice(k, p=p) for p in p_true])
    return z, y


def test_fit_temperature_recovers_the_generating_temperature():
    z, y = _overconfident()
    assert fit_temperature(z, y) == pytest.approx(2.5, rel=0.1)
    assert fit_temperature(z * 2.5, y) == pytest.approx(2.5 * 2.5, rel=0.1)


def test_scaling_log_probs_equals_scaling_logits():
    z, _ = _overconfident(n=50)
    p = apply_temperature(z, 1.0)
    assert np.allclose(apply_temperature(log_probs(p), 1.7), apply_temperature(z, 1.7), atol=1e-9)


def test_scaling_lowers_ece_and_nll_of_an_overconfident_model_and_keeps_argmax():
    z, y = _overconfident(seed=1)
    z_test, y_test = _overconfident(seed=2)
    p, p_test = apply_temperature(z, 1.0), apply_temperature(z_test, 1.0)
    rep = calibrate(p, y, p_test, y_test)
    assert rep.test["after"]["ece"] < 0.5 * rep.test["before"]["ece"]
    assert rep.test["after"]["nll"] < rep.test["before"]["nll"] and not rep.val_ece_raised
    after = apply_temperature(log_probs(p_test), rep.temperature)
    assert (after.argmax(axis=1) == p_test.argmax(axis=1)).all()


def test_nll_and_brier_match_their_definitions():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.5, 0.5, 0.0]])
    y = np.array([0, 2, 1])
    assert nll(p, y) == pytest.approx(log_loss(y, p, labels=[0, 1, 2]))
    assert brier(p, y) == pytest.approx(np.mean([0.09 + 0.04 + 0.01, 0.01 + 0.01 + 0.04, 0.25 + 0.25]))


def test_ece_by_hand_with_the_top_bin_closed():
    p = np.array([[1.0, 0.0], [1.0, 0.0], [0.55, 0.45], [0.55, 0.45]])
    y = np.array([0, 1, 0, 0])
    b = reliability_bins(p, y, n_bins=15)
    assert b["count"][-1] == 2  # confidence exactly 1 is in the last bin
    # bin of 1.0: accuracy 0.5, confidence 1.0; bin of 0.55: accuracy 1.0, confidence 0.55
    assert ece(p, y, n_bins=15) == pytest.approx(0.5 * 0.5 + 0.5 * 0.45)
    assert ece(np.array([[0.8, 0.2]] * 5), np.array([0, 0, 0, 0, 1])) == pytest.approx(0.0)


def test_check_flags_scaling_that_raises_val_ece():
    """A temperature chosen by NLL can raise ECE; the report says so (and the Dagster check fails)."""
    raised = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        p = rng.dirichlet([0.3, 0.3], 12)
        y = rng.integers(0, 2, 12)
        rep = calibrate(p, y, p, y)
        after, before = rep.val["after"]["ece"], rep.val["before"]["ece"]
        assert rep.val_ece_raised == (after > before + 1e-12)
        raised.append(rep.val_ece_raised)
    assert any(raised) and not all(raised)


def test_training_run_stores_calibration_and_calibrated_predictions(warehouse):
    gal, y = fill_toy_warehouse(warehouse, n=80, size=16, seed=3, separation=0.4)
    out = train_model(warehouse, "dinov2_probe", make_config("dinov2_probe", encoder="random_vits14",
                                                             gate_resamples=200))
    cal = json.loads(get_model(warehouse, "dinov2_probe", 1)["metrics_json"])["calibration"]
    assert cal["temperature"] == pytest.approx(out.calibration.temperature) and cal["temperature"] > 0
    assert {"ece", "nll", "brier"} <= set(cal["test"]["before"]) and cal["test"]["n"] == out.n["test"]
    assert (Path(out.artefact_dir) / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert str(Path(out.artefact_dir)).startswith(str(warehouse.root))
    predict_all(warehouse, gated=False)
    rows = [r for r in warehouse.read("predictions").to_pylist() if r["split"] == "test"]
    p = np.array([r["probabilities"] for r in rows])
    c = np.array([r["calibrated_probabilities"] for r in rows])
    assert {r["temperature"] for r in rows} == {cal["temperature"]}
    assert np.allclose(c, apply_temperature(log_probs(p), cal["temperature"]), atol=1e-5)
    index = {g: v for g, v in zip(gal["galaxy_id"], y)}
    y_test = np.array([index[r["galaxy_id"]] for r in rows])
    assert ece(c, y_test) == pytest.approx(cal["test"]["after"]["ece"], abs=1e-4)
