"""Anomaly scores (features/anomaly.py) and the ranking model (models/ranking.py) on seeded arrays."""

from __future__ import annotations

import numpy as np
import pytest

from features.anomaly import AnomalyParams, kth_neighbour_distance, normalise, score_vectors, to_rank
from features.errors import InputError
from models.ranking import RankingParams, acquisition_order, more_like_these, rank_galaxies


def _cloud(n: int = 400, d: int = 24, outliers: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A tight bundle of directions plus ``outliers`` rows pointing elsewhere (their indices returned)."""
    rng = np.random.default_rng(seed)
    centre = np.zeros(d)
    centre[0] = 1.0
    x = centre + 0.05 * rng.standard_normal((n, d))
    out = rng.choice(n, outliers, replace=False)
    x[out] = rng.standard_normal((outliers, d))
    return x.astype(np.float32), out


@pytest.mark.parametrize("method", ["iforest", "knn"])
def test_outliers_get_the_top_ranks(method: str) -> None:
    x, out = _cloud()
    s = score_vectors(x, [method], AnomalyParams(n_components=8))[method]
    assert s.rank.min() == 0.0 and s.rank.max() == 1.0
    top = set(np.argsort(-s.rank)[: len(out)].tolist())
    assert len(top & set(out.tolist())) >= len(out) - 1


def test_knn_on_a_sample_matches_exact_order_for_outliers() -> None:
    x, out = _cloud(n=600)
    exact = score_vectors(x, ["knn"], AnomalyParams(n_components=0))["knn"]
    sampled = score_vectors(x, ["knn"], AnomalyParams(n_components=0, max_reference=300))["knn"]
    assert set(np.argsort(-sampled.raw)[:8].tolist()) == set(np.argsort(-exact.raw)[:8].tolist()) == set(out.tolist())


def test_kth_neighbour_distance_known_values() -> None:
    z = np.array([[0.0], [1.0], [3.0], [7.0]], np.float32)
    np.testing.assert_allclose(kth_neighbour_distance(z, 1), [1, 1, 2, 4])
    np.testing.assert_allclose(kth_neighbour_distance(z, 2), [3, 2, 3, 6])


def test_rank_ties_and_single() -> None:
    np.testing.assert_allclose(to_rank(np.array([3.0, 1.0, 1.0, 2.0])), [1.0, 1 / 6, 1 / 6, 2 / 3])
    assert to_rank(np.array([5.0])).tolist() == [0.5]


def test_extra_columns_with_nan_are_used() -> None:
    x, _ = _cloud(n=100, outliers=0)
    extra = np.zeros((100, 1))
    extra[7] = 50.0
    extra[3] = np.nan
    s = score_vectors(x, ["knn"], AnomalyParams(n_components=4), extra=extra)["knn"]
    assert int(np.argmax(s.rank)) == 7
    assert np.isfinite(s.raw).all()


def test_bad_input_is_one_clear_error() -> None:
    with pytest.raises(InputError, match="at least 10"):
        score_vectors(np.ones((3, 4)))
    with pytest.raises(InputError, match="unknown anomaly method"):
        score_vectors(np.ones((30, 4)), ["lof"])
    bad = np.random.default_rng(0).standard_normal((30, 4))
    bad[2, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        score_vectors(bad)


def _two_groups(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((300, 8))
    wanted = np.zeros(300, bool)
    wanted[:30] = True
    x[wanted, 0] += 4.0
    return x, wanted


@pytest.mark.parametrize("model", ["rfc", "rf", "gp"])
def test_ranking_learns_the_wanted_group(model: str) -> None:
    x, wanted = _two_groups()
    labelled = [0, 1, 2, 100, 101, 102, 103, 104]
    values = [1, 1, 1, 0, 0, 0, 0, 0]
    r = rank_galaxies(x, np.full(300, 0.5), labelled, values, RankingParams(model=model, explore_every=0))
    top = r.order[:20]
    # 30 of 300 wanted: 0.1 by chance. The classifier tries sqrt(8) of the 8 columns per split, so with one
    # telling column and 3 positives it finds fewer (0.6 here); the benchmark, on 32 components, is its measure
    assert wanted[top].mean() >= (0.5 if model == "rfc" else 0.8)
    assert (r.position[labelled] == 0).all() and sorted(r.position[r.position > 0]) == list(range(1, 293))
    assert r.note == ""


def test_only_positives_is_documented_behaviour_and_empty_is_an_error() -> None:
    x, wanted = _two_groups()
    r = rank_galaxies(x, np.full(300, 0.5), [0, 1, 2], [1, 1, 1], RankingParams(explore_every=0))
    assert "no model trained" in r.note
    assert wanted[r.order[:20]].mean() >= 0.8
    with pytest.raises(InputError, match="no labels"):
        rank_galaxies(x, np.full(300, 0.5), [], [])
    with pytest.raises(InputError, match="distinct rows"):
        rank_galaxies(x, np.full(300, 0.5), [0, 0], [1, 0])


def test_only_negatives_keep_the_anomaly_order_away_from_them() -> None:
    # 270 ordinary galaxies, 15 artefacts (dimension 1) and 15 wanted ones (dimension 0); the anomaly score
    # ranks both rare groups on top. "Not these" on 5 artefacts must leave the wanted group next in line,
    # not send the person to the galaxies least like the artefacts (the ordinary ones), as it once did.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 8))
    artefact, wanted = np.zeros(300, bool), np.zeros(300, bool)
    artefact[:15], wanted[15:30] = True, True
    x[artefact, 1] += 6.0
    x[wanted, 0] += 6.0
    anomaly = np.where(artefact | wanted, 0.9 + 0.1 * rng.random(300), 0.6 * rng.random(300))
    for model in ("rfc", "rf", "gp"):
        r = rank_galaxies(x, anomaly, [0, 1, 2, 3, 4], [0, 0, 0, 0, 0], RankingParams(model=model, explore_every=0))
        assert "no model trained" in r.note and "anomaly rank" in r.note
        assert wanted[r.order[:15]].all(), model  # the whole wanted group first
        assert r.position[artefact].min() == 0 and r.position[artefact][5:].min() > 15  # artefacts after it


def test_acquisition_order_mixes_score_and_uncertainty() -> None:
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    unc = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    labelled = np.zeros(6, bool)
    order = acquisition_order(score, unc, labelled, explore_every=2)
    assert order.tolist() == [0, 5, 1, 2, 3, 4]
    assert acquisition_order(score, unc, labelled, 0).tolist() == [0, 1, 2, 3, 4, 5]


def test_more_like_these_uses_positives_and_negatives() -> None:
    x, wanted = _two_groups()
    top = more_like_these(x, [0, 1, 2, 3, 4], [100, 101], k=10)
    assert wanted[top].mean() >= 0.9
    assert not set(top.tolist()) & {0, 1, 2, 3, 4, 100, 101}
    with pytest.raises(InputError, match="at least one positive"):
        more_like_these(x, [], [1])
    assert np.allclose(np.linalg.norm(normalise(x), axis=1), 1.0, atol=1e-5)
