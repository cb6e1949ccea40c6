"""The late-fusion model: training from stored tables, ablations, missing modalities, W&B offline."""

import json
import sys

import numpy as np
import pytest
from toy_warehouse import fill_toy_tabular, fill_toy_warehouse

from features.flags import Flag
from models.config import make_config
from models.errors import MissingInputError, TrainingError
from models.fusion import FusionPreprocessor, ablation, ablation_table_md, fit_fusion
from models.fusion_data import MODALITIES, Modalities
from stages.predict import predict_all
from stages.training import train_model
from stages.versions import get_model

FAST = {"epochs": 25, "patience": 8, "gate_resamples": 200}


def _modalities(n, seed=0, shift=0.0, present=None):
    rng = np.random.default_rng(seed)
    x = {"embeddings": rng.normal(shift, 1, (n, 6)), "morphometrics": rng.normal(shift, 1, (n, 3)),
         "photometry": rng.normal(shift, 1, (n, 2))}
    pres = {m: np.ones(n, bool) if present is None else present[m] for m in MODALITIES}
    return Modalities([f"g{i}" for i in range(n)], x, pres, {m: [] for m in MODALITIES})


def test_preprocessor_is_fitted_on_train_only_and_imputes_with_train_medians():
    train = _modalities(50, seed=1)
    train.x["morphometrics"][:5, 1] = np.nan  # single NaNs of a present modality: indicator column
    pre = FusionPreprocessor.fit(train, MODALITIES)
    med = np.nanmedian(train.x["morphometrics"], axis=0)
    assert np.allclose(pre.median["morphometrics"], med)
    assert pre.indicator["morphometrics"].tolist() == [False, True, False]
    assert pre.dims() == {"embeddings": 6, "morphometrics": 4, "photometry": 2}
    val = _modalities(20, seed=2, shift=100.0, present={"embeddings": np.ones(20, bool),
                                                        "morphometrics": np.zeros(20, bool),
                                                        "photometry": np.ones(20, bool)})
    before = {k: v.copy() for k, v in pre.mean.items()}
    x, mask = pre.transform(val)
    assert all(np.array_equal(before[k], pre.mean[k]) for k in before)  # val never refits anything
    assert x.shape == (20, 6 + 4 + 2 + 3) and mask[:, 1].sum() == 0 and mask[:, 0].all()
    morph = x[:, 6:9]  # a missing modality is the train median, standardised with train statistics
    expect = (med - pre.mean["morphometrics"][:3]) / pre.scale["morphometrics"][:3]
    assert np.allclose(morph, expect[None, :], atol=1e-5)
    assert np.allclose(x[:, -3:], [[1, 0, 1]] * 20)


def test_ablation_claims_a_gain_only_where_the_interval_excludes_zero():
    rng = np.random.default_rng(0)
    n = 240
    y = rng.integers(0, 3, n)
    # morphometrics carry half the signal, photometry the other half: only together do they separate
    a = (y == 1).astype(float)[:, None] + rng.normal(0, 0.3, (n, 1))
    b = (y == 2).astype(float)[:, None] + rng.normal(0, 0.3, (n, 1))
    data = Modalities([str(i) for i in range(n)],
                      {"embeddings": rng.normal(0, 1, (n, 4)), "morphometrics": a, "photometry": b},
                      {m: np.ones(n, bool) for m in MODALITIES}, {m: [] for m in MODALITIES})
    tr, va, te = np.arange(0, 140), np.arange(140, 180), np.arange(180, n)
    res = ablation(data.subset(tr), y[tr], data.subset(va), y[va], data.subset(te), y[te],
                   modalities=list(MODALITIES), num_classes=3, n_boot=300, epochs=30, patience=8)
    rows = {r["modalities"]: r for r in res["rows"]}
    assert len(rows) == 7 and res["best_single"] in MODALITIES
    for r in rows.values():
        assert r["ci95"][0] <= r["balanced_accuracy"] <= r["ci95"][1]
        if "gain" in r:
            assert r["gain"] == (r["difference_ci95"][0] > 0)
    assert rows["morphometrics+photometry"]["gain"]
    assert rows["morphometrics+photometry"]["balanced_accuracy"] > 0.85
    assert rows["embeddings"]["balanced_accuracy"] < 0.6
    md = ablation_table_md(res)
    assert "Gain claimed for:" in md and "morphometrics+photometry" in md.split("Gain claimed for:")[1]


def test_fit_is_seeded():
    data, y = _modalities(60, seed=3), np.arange(60) % 2
    a = fit_fusion(data, y, data, y, modalities=MODALITIES, num_classes=2, seed=4, epochs=5, patience=5)
    b = fit_fusion(data, y, data, y, modalities=MODALITIES, num_classes=2, seed=4, epochs=5, patience=5)
    assert np.array_equal(a.predict_proba(data), b.predict_proba(data))


def test_fusion_trains_registers_ablates_and_flags_missing_modalities(warehouse):
    gal, y = fill_toy_warehouse(warehouse, n=96, separation=0.1, blind_images=True)
    fill_toy_tabular(warehouse, gal, y, separation=1.5, phot_source="catalogue:sdss_like_n96_seed0.parquet")
    out = train_model(warehouse, "fusion", make_config("fusion", **FAST))
    assert any(n.startswith("photometry is the demo survey's synthetic SDSS-like catalogue") for n in out.notes)
    assert out.fit["photometry_sources"] == {"catalogue:sdss_like_n96_seed0.parquet": out.n["train"]}
    row = get_model(warehouse, "fusion", 1)
    assert row["kind"] == "fusion"
    versions = json.loads(row["table_versions_json"])
    assert {"galaxies", "splits", "embeddings_random_vits14", "morphometrics", "photometry"} <= set(versions)
    assert versions["morphometrics"] == warehouse.dataset("morphometrics").version
    metrics = json.loads(row["metrics_json"])
    assert metrics["fit"]["modalities"] == list(MODALITIES) and metrics["fit"]["modalities_missing_for_all"] == []
    abl = metrics["fit"]["ablation"]
    assert len(abl["rows"]) == 7 and abl["n_test"] == out.n["test"]
    full = next(r for r in abl["rows"] if r["n_modalities"] == 3)
    assert full["balanced_accuracy"] == pytest.approx(out.metrics["balanced_accuracy"])
    assert metrics["calibration"]["temperature"] > 0 and "lac" in metrics["conformal"]["scores"]
    assert out.weights_origin.is_random  # the toy embeddings are random-weights, and the record says so
    summary = predict_all(warehouse, gated=False, mc_passes=3)
    assert summary["fusion v1"]["written"] == 96 and summary["fusion v1"]["mc_dropout"].startswith("MC dropout")
    preds = [r for r in warehouse.read("predictions").to_pylist() if r["model_name"] == "fusion"]
    assert all(r["conformal_set_size"] >= 1 and r["mutual_information"] >= 0 for r in preds)
    inputs = {r["galaxy_id"]: r for r in warehouse.read("fusion_inputs").to_pylist()}
    morph_bad = {r["galaxy_id"] for r in warehouse.read("morphometrics").to_pylist() if r["flags"]}
    phot_bad = {r["galaxy_id"] for r in warehouse.read("photometry").to_pylist() if not r["quality_ok"]}
    assert morph_bad and phot_bad
    for g, r in inputs.items():
        expect = [m for m, bad in (("morphometrics", morph_bad), ("photometry", phot_bad)) if g in bad]
        assert r["missing_modalities"] == expect
        assert r["flags"] == (int(Flag.MODALITY_MISSING) if expect else 0)


def test_a_modality_missing_for_every_galaxy_is_said_flagged_and_the_run_goes_on(warehouse):
    gal, y = fill_toy_warehouse(warehouse, n=80, separation=1.0)
    fill_toy_tabular(warehouse, gal, y, phot=False)  # no photometry at all (e.g. SDSS unreachable offline)
    out = train_model(warehouse, "fusion", make_config("fusion", **FAST))
    assert out.fit["modalities"] == ["embeddings", "morphometrics"]
    assert out.fit["modalities_missing_for_all"] == ["photometry"]
    assert any("modality photometry MISSING for every training galaxy" in n for n in out.notes)
    assert {r["modalities"] for r in out.fit["ablation"]["rows"]} == {"embeddings", "morphometrics",
                                                                      "embeddings+morphometrics"}
    predict_all(warehouse, gated=False, mc_passes=0)
    rows = warehouse.read("fusion_inputs").to_pylist()
    assert len(rows) == 80 and all("photometry" in r["missing_modalities"] for r in rows)
    assert all(r["flags"] & Flag.MODALITY_MISSING for r in rows)


def test_fusion_refuses_a_fine_tuned_encoder_and_needs_some_modality(warehouse):
    fill_toy_warehouse(warehouse, n=40, embeddings=False)
    with pytest.raises(MissingInputError, match="fine-tuned on a split that includes val or test"):
        train_model(warehouse, "fusion", make_config("fusion", encoder="dinov2_finetune", **FAST))
    with pytest.raises(MissingInputError, match="no modality is present for any training galaxy"):
        train_model(warehouse, "fusion", make_config("fusion", encoder="random_vits14", **FAST))
    assert not warehouse.exists("models")


def test_wandb_offline_logs_the_run_under_wandb_dir(warehouse, tmp_path, monkeypatch, capsys):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    from service.cli import main

    fill_toy_warehouse(warehouse, n=64, separation=1.0)
    assert main(["--home", str(warehouse.root), "train", "dinov2_probe", "--wandb-project", "astrovision-test",
                 "--quiet"]) == 0  # the CLI option -> the asset's run config -> RunConfig.wandb_project
    assert "  tracking: W&B project astrovision-test: " in capsys.readouterr().out
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    assert json.loads(get_model(warehouse, "dinov2_probe", 1)["config_json"])["wandb_project"] == "astrovision-test"


def test_wandb_configured_but_not_installed_stops_before_training(warehouse, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # ``import wandb`` raises ImportError: as if not installed
    monkeypatch.setenv("ASTROVISION_WANDB_PROJECT", "p")
    fill_toy_warehouse(warehouse, n=40)
    with pytest.raises(TrainingError, match=r"^W&B logging is configured \(project 'p'\) but the wandb package is "
                                            r"not installed; pip install 'astrovision\[wandb\]'"):
        train_model(warehouse, "dinov2_probe", make_config("dinov2_probe"))
    assert not warehouse.exists("models")


def test_dagster_fusion_asset_shows_the_ablation_and_its_checks(warehouse):
    import dagster as dg

    from dagster_project.defs.training.assets import fusion, predictions, splits
    from dagster_project.resources import WarehouseResource

    gal, y = fill_toy_warehouse(warehouse, n=80, separation=1.0)
    fill_toy_tabular(warehouse, gal, y)
    res = dg.materialize([splits, fusion, predictions],
                         resources={"warehouse": WarehouseResource(root=str(warehouse.root))},
                         run_config={"ops": {"fusion": {"config": {"epochs": 15}}}})
    assert res.success
    checks = {(e.asset_key.to_user_string(), e.check_name) for e in res.get_asset_check_evaluations()}
    assert {("fusion", "beats_baselines"), ("fusion", "scaling_keeps_val_ece")} <= checks
    meta = {e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in res.get_asset_materialization_events()}["fusion"]
    table = meta["ablation"].value
    assert table.startswith("| modalities | test balanced accuracy [95% CI] |") and table.count("\n| ") == 7  # one row per modality subset
    assert meta["modalities"].value == list(MODALITIES) and meta["experiment_tracking"].value.startswith("off")
    assert json.loads(get_model(warehouse, "fusion", 1)["metrics_json"])["fit"]["ablation"]["n_test"] == meta["n_test"].value


def test_cli_train_fusion_prints_modalities_and_the_ablation(warehouse, capsys):
    from service.cli import main

    gal, y = fill_toy_warehouse(warehouse, n=60, separation=1.0)
    fill_toy_tabular(warehouse, gal, y, phot=False)
    assert main(["--home", str(warehouse.root), "train", "fusion", "--epochs", "10", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "modalities: embeddings, morphometrics; MISSING for every galaxy: photometry" in out
    table = out.split("ablation (test):")[1]
    assert sum(line.strip().startswith("| embeddings") or line.strip().startswith("| morphometrics")
               for line in table.splitlines()) == 3  # embeddings, morphometrics, both
    assert "note: modality photometry MISSING for every training galaxy" in out


def test_ablation_fitted_in_processes_equals_the_serial_one():
    """Issue 25: the subsets' fits side by side in two processes give the serial rows exactly."""
    rng = np.random.default_rng(1)
    n = 120
    y = rng.integers(0, 3, n)
    data = Modalities([str(i) for i in range(n)],
                      {"embeddings": rng.normal(0, 1, (n, 4)) + y[:, None], "morphometrics": rng.normal(0, 1, (n, 2)),
                       "photometry": (y == 2).astype(float)[:, None] + rng.normal(0, 0.5, (n, 1))},
                      {m: np.ones(n, bool) for m in MODALITIES}, {m: [] for m in MODALITIES})
    tr, va, te = np.arange(0, 70), np.arange(70, 95), np.arange(95, n)
    args = (data.subset(tr), y[tr], data.subset(va), y[va], data.subset(te), y[te])
    kw = {"modalities": list(MODALITIES), "num_classes": 3, "n_boot": 100, "epochs": 10, "patience": 4}
    serial = ablation(*args, workers=1, **kw)
    pooled = ablation(*args, workers=2, **kw)
    assert len(serial["rows"]) == 7 and serial == pooled
