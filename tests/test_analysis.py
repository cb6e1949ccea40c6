"""Representation analysis: the statistics against known answers, grouped folds, maps, the assets, the report."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.representation import (
    bh_qvalues,
    grouped_cv_r2,
    grouped_folds,
    neighbourhood_preservation,
    pca_map,
    spearman_ci,
    umap_map,
)
from stages.analysis import analyse, build_maps

sys.path.insert(0, str(Path(__file__).parent))
from analysis_toy import fill_toy

CHROMIUM = "/usr/bin/chromium"


# ------------------------------------------------------------------ statistics with known answers
def test_spearman_of_a_perfect_monotone_relation_is_one_with_a_tight_interval():
    x = np.random.default_rng(0).normal(size=200)
    e = spearman_ci(x, np.exp(3 * x), n_boot=500, n_perm=500)
    assert e.value == pytest.approx(1.0)
    assert e.ci_low > 0.999 and e.ci_high == pytest.approx(1.0)
    assert e.p == pytest.approx(1 / 501)  # no permutation reaches |rho| = 1
    assert e.n == 200


def test_spearman_of_independent_variables_has_an_interval_covering_zero():
    rng = np.random.default_rng(1)
    e = spearman_ci(rng.normal(size=300), rng.normal(size=300), n_boot=500, n_perm=500, seed=3)
    assert e.ci_low < 0 < e.ci_high
    assert e.ci_high - e.ci_low < 0.3  # ~ 2 x 1.96 / sqrt(300)
    assert e.p > 0.05


def test_spearman_drops_non_finite_pairs_and_is_nan_when_undefined():
    x = np.array([1.0, 2.0, np.nan, 4.0, 5.0, np.inf])
    e = spearman_ci(x, np.array([2.0, 4.0, 1.0, 8.0, 10.0, 3.0]), n_boot=50, n_perm=50)
    assert e.n == 4 and e.value == pytest.approx(1.0)
    const = spearman_ci(np.ones(10), np.arange(10.0))
    assert np.isnan(const.value) and np.isnan(const.ci_low) and np.isnan(const.p) and const.n == 10


def test_benjamini_hochberg_matches_a_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.20, np.nan])
    # sorted 0.01, 0.03, 0.04, 0.20 with m = 4: m p / rank = 0.04, 0.06, 0.0533, 0.20; then running
    # minimum from the top: 0.04, 0.0533, 0.0533, 0.20
    q = bh_qvalues(p)
    np.testing.assert_allclose(q[:4], [0.04, 0.16 / 3, 0.16 / 3, 0.20], rtol=1e-12)
    assert np.isnan(q[4])
    assert bh_qvalues(np.array([])).shape == (0,)


def test_grouped_folds_never_split_a_duplicate_group():
    rng = np.random.default_rng(0)
    groups = np.array([f"g{int(v)}" for v in rng.integers(0, 40, 300)])
    folds = grouped_folds(groups, 5, seed=1)
    for g in np.unique(groups):
        assert len(set(folds[groups == g])) == 1
    sizes = np.bincount(folds)
    assert len(sizes) == 5 and sizes.min() > 0.5 * sizes.max()
    with pytest.raises(ValueError, match="at least 5 groups"):
        grouped_folds(np.array(["a", "a", "b"]), 5)


def test_grouped_cv_r2_finds_a_linear_signal_and_not_noise():
    rng = np.random.default_rng(0)
    n = 200
    signal = rng.normal(size=(n, 20))
    y = signal @ rng.normal(size=20) + rng.normal(0, 0.1, n)
    groups = np.arange(n) // 2  # pairs
    est = grouped_cv_r2({"signal": signal, "noise": rng.normal(size=(n, 20))}, y, groups, n_boot=300,
                        reference="noise")
    assert est["signal"].value > 0.95 and est["signal"].ci_low > 0.9
    assert est["noise"].value < 0.05
    d = est["signal-minus-noise"]
    assert d.value == pytest.approx(est["signal"].value - est["noise"].value) and d.ci_low > 0.8 and d.p < 0.01


def test_grouped_cv_keeps_duplicates_from_leaking():
    """Each galaxy twice (an exact duplicate) and a target that is noise: grouped folds give no skill."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(100, 50))
    y = rng.normal(size=100)
    x2, y2, groups = np.repeat(x, 2, axis=0), np.repeat(y, 2), np.repeat(np.arange(100), 2)
    grouped = grouped_cv_r2({"x": x2}, y2, groups, n_boot=100)["x"]
    leaky = grouped_cv_r2({"x": x2}, y2, np.arange(200), n_boot=100)["x"]  # duplicates split across folds
    assert grouped.value < 0.05
    assert leaky.value > grouped.value + 0.2


# ------------------------------------------------------------------ maps
def test_pca_map_components_and_variance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 8)) * np.array([10, 5, 1, 1, 1, 1, 1, 1])
    m = pca_map(x, 3)
    assert m.coords.shape == (100, 3) and m.components.shape == (3, 8)
    assert np.all(np.diff(m.explained_variance) <= 0) and 0.8 < m.explained_variance_ratio[:2].sum() < 1
    np.testing.assert_allclose(m.coords, (x - x.mean(0)) @ m.components.T, rtol=1e-4, atol=1e-3)
    assert abs(m.components[0, 0]) > 0.99  # the axis of variance 100
    with pytest.raises(ValueError, match="NaN"):
        pca_map(np.array([[1.0, np.nan], [2.0, 3.0]]))


def test_neighbourhood_preservation_bounds():
    x = np.random.default_rng(0).normal(size=(200, 5))
    assert neighbourhood_preservation(x, x * 3) == 1.0
    shuffled = np.random.default_rng(1).permutation(x)
    assert neighbourhood_preservation(x, shuffled) < 0.2
    assert np.isnan(neighbourhood_preservation(x[:5], x[:5]))


def test_umap_is_seeded_and_subsamples_above_max_fit():
    """The one UMAP test (numba compiles on the first fit of a process)."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (40, 16)), rng.normal(8, 1, (40, 16))]).astype(np.float32)
    a = umap_map(x, seed=0, n_neighbors=10)
    b = umap_map(x, seed=0, n_neighbors=10)
    np.testing.assert_array_equal(a.coords, b.coords)
    assert a.fitted.all() and np.isfinite(a.coords).all()
    sub = umap_map(x, seed=0, n_neighbors=10, max_fit=50)
    assert sub.fitted.sum() == 50 and np.isfinite(sub.coords).all()
    # the two clusters stay apart in the map, for fitted and transformed points alike
    side = sub.coords[:, 0] > np.median(sub.coords[:, 0])
    assert len(set(side[:40])) == 1 and len(set(side[40:])) == 1 and side[0] != side[40]
    tiny = umap_map(x[:3])
    assert np.isnan(tiny.coords).all() and not tiny.fitted.any()


# ------------------------------------------------------------------ the stage over a warehouse
@pytest.fixture
def toy(warehouse):
    return warehouse, fill_toy(warehouse)


def test_maps_are_stored_per_encoder_and_join_features_in_sql(toy):
    wh, _ = toy
    out = build_maps(wh, methods=["pca"])
    assert set(out.encoders) == {"dinov2_vits14", "random_vits14"}
    rows = wh.sql("SELECT encoder, method, count(*) AS n, any_value(weights_origin) AS w FROM embedding_maps "
                  "GROUP BY ALL ORDER BY encoder").to_dicts()
    assert rows == [{"encoder": "dinov2_vits14", "method": "pca", "n": 60, "w": "local"},
                    {"encoder": "random_vits14", "method": "pca", "n": 60, "w": "random init"}]
    r = wh.sql("SELECT abs(corr(m.x, f.gini)) AS r FROM embedding_maps m JOIN galaxy_features f USING (galaxy_id) "
               "WHERE m.encoder = 'dinov2_vits14'").item()
    assert r > 0.999  # PC1 of the toy "DINOv2" vectors is Gini by construction
    pca = wh.sql("SELECT component, explained_variance_ratio AS r FROM embedding_pca "
                 "WHERE encoder = 'dinov2_vits14' ORDER BY component").to_dicts()
    assert len(pca) == 10 and pca[0]["r"] > 0.9
    assert all(p.is_file() and p.stat().st_size > 1000 for p in out.figures.values())
    build_maps(wh, methods=["pca"])  # again: the same rows, not twice as many
    assert wh.count("embedding_maps") == 120


def test_bad_map_requests_are_clear_and_write_nothing(toy):
    wh, _ = toy
    with pytest.raises(ValueError, match="unknown map method"):
        build_maps(wh, methods=["tsne"])
    with pytest.raises(ValueError, match="no embeddings stored for dinov2_vitb14; present: dinov2_vits14, random_vits14"):
        build_maps(wh, encoders=["dinov2_vitb14"])
    with pytest.raises(ValueError, match="no PCA map of dinov2_vits14"):
        analyse(wh)
    assert not wh.exists("embedding_maps") or wh.count("embedding_maps") == 0


def test_analysis_finds_the_planted_signal_and_names_the_weights(toy):
    wh, _ = toy
    build_maps(wh, methods=["pca"])
    out = analyse(wh, n_boot=200, n_perm=200)
    df = wh.sql("SELECT * FROM representation_analysis", limit=None)
    assert df.height == out.rows.num_rows
    rows = {(r["quantity"], r["encoder"], r["statistic"]): r for r in df.to_dicts()}
    rho = rows[("gini", "dinov2_vits14", "spearman_pc1")]
    assert abs(rho["value"]) > 0.99 and rho["q"] < 0.05 and rho["weights_origin"] == "local"
    assert rho["subset"] == "morph_ok" and rho["source"] == "galaxy_features" and rho["n"] == 60
    noise = rows[("gini", "random_vits14", "spearman_pc1")]
    assert noise["ci_low"] < 0 < noise["ci_high"] and noise["weights_origin"] == "random init"
    r2 = rows[("gini", "dinov2_vits14", "r2_cv")]
    assert r2["value"] > 0.9 and r2["ci_low"] > 0.8
    assert rows[("gini", "pixels", "r2_cv")]["value"] < 0.3  # toy images carry no Gini
    assert rows[("gini", "dinov2_vits14", "r2_cv_minus_pixels")]["ci_low"] > 0.5
    assert ("g_r", "dinov2_vits14", "spearman_pc1") not in rows  # no photometry, no colour rows
    assert {"dinov2_vits14_correlations", "random_vits14_correlations", "r2_cv"} <= set(out.figures)
    analyse(wh, encoders=["random_vits14"], n_boot=50, n_perm=50)  # one encoder again: the other's rows stay
    assert wh.count("representation_analysis", "encoder = 'dinov2_vits14'") == sum(
        1 for k in rows if k[1] == "dinov2_vits14")


def test_analysis_group_materializes_through_dagster(toy):
    from dagster_project.runner import run_pipeline

    wh, _ = toy
    report = run_pipeline(wh, [], groups=["analysis"], progress=False, log=lambda m: None,
                          run_config={"ops": {"embedding_maps": {"config": {"methods": ["pca"]}},
                                              "representation_analysis": {"config": {"n_boot": 100, "n_perm": 100}}}})
    assert report.ok, report.failed
    assert wh.count("embedding_maps") == 120
    runs = set(wh.read("representation_analysis", columns=["run_id"]).column("run_id").to_pylist())
    assert len(runs) == 1 and runs != {""}
    assert "![dinov2_vits14_pca_class](data:image/png;base64," in str(report.metadata["embedding_maps"])


def _dom(html: Path) -> str:
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", html.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None,
                    reason="Debian chromium is not installed (/usr/bin/chromium): the report is not opened")
def test_report_is_one_self_contained_page_that_opens_in_a_browser(toy, tmp_path):
    from service.cli import main

    wh, _ = toy
    build_maps(wh, methods=["pca"])
    analyse(wh, n_boot=100, n_perm=100)
    out = tmp_path / "report.html"
    assert main(["--home", str(wh.root), "report", "--out", str(out)]) == 0
    text = out.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text  # nothing fetched
    dom = _dom(out)
    assert 'id="correlations"' in dom and 'id="r2"' in dom and 'id="embeddings"' in dom
    r2 = wh.sql("SELECT value FROM representation_analysis WHERE quantity = 'gini' AND encoder = 'dinov2_vits14' "
                "AND statistic = 'r2_cv'").item()
    assert f"{r2:.3f}" in dom  # the table the browser shows holds the stored number
    assert dom.count("data:image/png;base64,") >= 7  # 6 maps, 2 heatmaps, R^2 bars, contact sheet
    assert "random init" in dom and "No classifiers" in dom


def test_report_to_a_missing_folder_is_one_line_exit_2(toy, tmp_path, capsys):
    from service.cli import main

    wh, _ = toy
    assert main(["--home", str(wh.root), "report", "--out", str(tmp_path / "nope" / "r.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err and "does not exist" in err
    assert not (tmp_path / "nope").exists()


def test_bootstrap_ranks_equal_the_ranks_of_the_resample():
    """The O(n) resample ranks are scipy's average ranks of the resampled values, ties included."""
    from scipy.stats import rankdata

    from models.representation.stats import _rank_groups, _resample_ranks

    rng = np.random.default_rng(0)
    x = rng.integers(0, 12, 50).astype(float)  # many ties
    idx = rng.integers(0, 50, 50)
    counts = np.bincount(idx, minlength=50)[None, :]
    ranks = _resample_ranks(counts, *_rank_groups(x))[0]
    np.testing.assert_allclose(ranks[idx], rankdata(x[idx]))


def test_a_tiny_warehouse_gets_named_skips_not_failures(warehouse):
    from stages.analysis import UMAP_MIN_VECTORS

    fill_toy(warehouse, n=2)
    out = build_maps(warehouse)
    assert out.notes == ["dinov2_vits14: 2 vectors, fewer than 3: no map", "random_vits14: 2 vectors, fewer than 3: no map"]
    assert analyse(warehouse, n_boot=10, n_perm=10).rows.num_rows == 0
    fill_toy(warehouse, n=20)
    out = build_maps(warehouse)
    assert f"dinov2_vits14: 20 vectors, fewer than {UMAP_MIN_VECTORS}: no UMAP" in out.notes
    assert set(warehouse.sql("SELECT DISTINCT method FROM embedding_maps")["method"]) == {"pca"}


def test_umaps_fitted_side_by_side_in_processes_equal_the_serial_ones(tmp_path):
    """Issue 25: the two encoders' UMAPs in two processes give the serial path's maps and scores, bit for bit."""
    from warehouse import Warehouse

    tables, outs = [], []
    for name, workers in (("serial", 1), ("pool", 2)):
        wh = Warehouse.open(tmp_path / name)
        fill_toy(wh)
        outs.append(build_maps(wh, workers=workers))
        tables.append(wh.read("embedding_maps", columns=["galaxy_id", "encoder", "method", "x", "y", "coords",
                                                         "fitted", "params_json"]).sort_by(
            [("encoder", "ascending"), ("method", "ascending"), ("galaxy_id", "ascending")]))
    serial, pooled = tables
    assert serial.num_rows == 2 * 2 * 60 and serial.equals(pooled)
    for enc in ("dinov2_vits14", "random_vits14"):
        a, b = outs[0].encoders[enc]["umap"], outs[1].encoders[enc]["umap"]
        assert a["fitted"] == b["fitted"] == 60 and a["knn10_preservation"] == b["knn10_preservation"] is not None


def test_analysis_estimates_in_processes_or_threads_equal_the_serial_ones(tmp_path, monkeypatch):
    """Issue 25: rho and R^2 rows from two processes, or (the default below the pool's threshold) with the rho
    jobs on two threads, are the serial path's, value for value (NaN where it is NaN)."""
    import features.parallel
    from warehouse import Warehouse

    monkeypatch.setattr(features.parallel, "step_cores", lambda: 2)  # two threads on any machine
    results = []
    for name, workers in (("serial", 1), ("pool", 2), ("threads", None)):
        wh = Warehouse.open(tmp_path / name)
        fill_toy(wh)
        build_maps(wh, methods=["pca"])
        out = analyse(wh, n_boot=50, n_perm=50, workers=workers)
        results.append((out.rows.to_pylist(), out.notes))
    (serial, notes), *others = results
    assert len(serial) > 20
    assert {r["statistic"] for r in serial} >= {"spearman_pc1", "r2_cv", "r2_cv_minus_pixels"}
    for rows, other_notes in others:
        assert other_notes == notes
        for a, b in zip(serial, rows, strict=True):
            assert all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a), (a, b)


def test_thread_map_keeps_order_and_raises_the_first_error():
    from features.parallel import thread_map

    assert thread_map(lambda x: x * x, range(20), workers=3) == [x * x for x in range(20)]
    assert thread_map(lambda x: x + 1, [], workers=2) == []

    def bad(x):
        if x == 5:
            raise ValueError("galaxy 5")
        return x

    with pytest.raises(ValueError, match="galaxy 5"):
        thread_map(bad, range(10), workers=2)
