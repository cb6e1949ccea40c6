"""Same-run baselines and the gate: values known from theory, paired bootstrap behaviour, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from models.baselines import Gate, bootstrap_balanced_accuracy, gate, majority_predictions, pixel_features
from models.config import make_config
from models.errors import TrainingError


def _labels(n=90, k=10, seed=0):
    return np.random.default_rng(seed).permutation(np.arange(n) % k)


def test_majority_baseline_has_balanced_accuracy_one_over_k():
    y = _labels()
    pred = majority_predictions(np.array([3, 3, 1, 2]), len(y))
    point, reps = bootstrap_balanced_accuracy(y, {"majority": pred}, n_boot=200)
    assert set(pred.tolist()) == {3}
    assert point["majority"] == pytest.approx(0.1)
    # a resample lacking some classes averages over the classes present: 1/K' >= 1/K
    assert reps["majority"].min() >= 0.1 - 1e-12


def test_point_estimate_is_sklearn_balanced_accuracy():
    rng = np.random.default_rng(1)
    y = _labels()
    pred = np.where(rng.random(len(y)) < 0.6, y, rng.integers(0, 10, len(y)))
    point, _ = bootstrap_balanced_accuracy(y, {"m": pred})
    assert point["m"] == pytest.approx(balanced_accuracy_score(y, pred))


def test_bootstrap_is_seeded_and_paired():
    y = _labels()
    a = bootstrap_balanced_accuracy(y, {"m": y, "b": np.zeros_like(y)}, n_boot=300, seed=4)[1]
    b = bootstrap_balanced_accuracy(y, {"m": y, "b": np.zeros_like(y)}, n_boot=300, seed=4)[1]
    assert np.array_equal(a["m"], b["m"]) and np.array_equal(a["b"], b["b"])
    same = bootstrap_balanced_accuracy(y, {"m": y, "twin": y.copy()}, n_boot=300)[1]
    assert np.array_equal(same["m"] - same["twin"], np.zeros(300))  # paired: identical predictors never differ


def test_perfect_model_passes_against_majority():
    y = _labels()
    g = gate(y, y, {"majority": majority_predictions(y, len(y))})
    assert g.passed and g.balanced_accuracy == 1.0 and g.interval == (1.0, 1.0)
    assert g.baselines["majority"]["difference_lower"] == pytest.approx(0.9)
    assert "beats every baseline on 90 test galaxies" == g.reason


def test_model_equal_to_a_baseline_fails():
    y = _labels()
    pred = np.where(np.arange(len(y)) % 2 == 0, y, (y + 1) % 10)
    g = gate(y, pred, {"majority": majority_predictions(y, len(y)), "pixels": pred.copy()})
    assert not g.passed
    assert g.baselines["pixels"]["difference_lower"] == 0.0
    assert g.baselines["majority"]["difference_lower"] > 0
    assert g.reason.startswith("does not beat pixels 0.5")


def test_small_margin_on_a_small_test_set_fails_and_large_margin_passes():
    """10 points of balanced accuracy are inside the noise of 20 test galaxies, 50 points are not."""
    rng = np.random.default_rng(2)
    y = _labels(20, 2)
    base = np.where(rng.random(20) < 0.5, y, 1 - y)
    better = base.copy()
    wrong = np.flatnonzero(base != y)
    better[wrong[:2]] = y[wrong[:2]]  # two more right
    assert not gate(y, better, {"pixels": base}).passed
    assert gate(y, y, {"pixels": base}).passed


def test_empty_split_fails_with_reason():
    g = gate(np.zeros(0, int), np.zeros(0, int), {"majority": np.zeros(0, int)})
    assert not g.passed and g.reason == "the test split is empty" and g.n == 0


def test_gate_round_trips_through_json_dict():
    y = _labels()
    g = gate(y, y, {"majority": majority_predictions(y, len(y))}, n_boot=50)
    assert Gate.from_dict(g.as_dict()) == g


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5])
def test_bad_confidence_raises(confidence):
    with pytest.raises(ValueError, match="confidence"):
        gate(np.array([0, 1]), np.array([0, 1]), {}, confidence=confidence)
    with pytest.raises(TrainingError, match="gate_confidence"):
        make_config("cnn", gate_confidence=confidence)


def test_pixel_features_of_a_uniform_stamp():
    stamps = np.full((2, 3, 16, 16), 255, np.uint8)
    stamps[1] = 0
    f = pixel_features(stamps)
    assert f.shape == (2, 3 * 64 + 6) and f.dtype == np.float32
    assert np.allclose(f[0, :195], 1.0) and np.allclose(f[0, 195:], 0.0)  # thumbnail and means 1, std 0
    assert np.allclose(f[1], 0.0)
    with pytest.raises(ValueError, match="multiple of 8"):
        pixel_features(np.zeros((1, 3, 12, 12), np.uint8))


def test_models_and_warehouse_name_embeddings_tables_alike():
    from features.embeddings import ENCODERS
    from models.data import embeddings_table
    from warehouse.schemas.embeddings import embedding_table

    assert all(embeddings_table(e) == embedding_table(e) for e in ENCODERS)


def test_interval_is_scipys_percentile_bootstrap_seeded_and_close_to_the_old_draws():
    """balanced_accuracy_interval uses scipy.stats.bootstrap (issue 22): the same point, an interval within
    Monte Carlo error of the project's own resamples, identical for the same seed."""
    from models.baselines import balanced_accuracy_interval, balanced_accuracy_of

    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, 300)
    pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, 10, 300))
    point, low, high = balanced_accuracy_interval(y, pred, seed=3)
    assert point == pytest.approx(balanced_accuracy_score(y, pred)) == balanced_accuracy_of(y, pred)
    assert (point, low, high) == balanced_accuracy_interval(y, pred, seed=3)
    _, reps = bootstrap_balanced_accuracy(y, {"m": pred}, n_boot=2000, seed=3)
    old_low, old_high = np.quantile(reps["m"], [0.025, 0.975])
    assert low == pytest.approx(old_low, abs=0.01) and high == pytest.approx(old_high, abs=0.01)
    assert low < point < high
    assert balanced_accuracy_interval(y[:1], y[:1]) == (1.0, 1.0, 1.0)
    assert all(np.isnan(balanced_accuracy_interval(y[:0], pred[:0])))
