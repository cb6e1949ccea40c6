"""Training runs over a warehouse: registry and versions, reproducibility, separability, bad input, CLI, Dagster."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from toy_warehouse import ENCODER
from toy_warehouse import fill_toy_warehouse as _fill

from features.weights import WeightsOrigin
from models.config import make_config
from models.errors import LabelError, MissingInputError, TooFewClassesError
from models.toy import toy_images, toy_rows
from stages.predict import load_predictor, predict_all
from stages.training import build_splits, train_model
from stages.versions import get_model, list_models, training_set


def _cnn_cfg(**kw):
    return make_config("cnn", **{"img_size": 32, "epochs": 1, "max_steps": 3, "batch_size": 16, **kw})


@pytest.fixture
def filled(warehouse):
    _fill(warehouse)
    return warehouse


def test_probe_run_is_registered_with_table_versions(filled):
    out = train_model(filled, "dinov2_probe", make_config("dinov2_probe"))
    assert (out.name, out.version) == ("dinov2_probe", 1)
    assert out.config.encoder == ENCODER  # "auto" found the random baseline's table
    assert out.weights_origin.origin is WeightsOrigin.RANDOM_INIT and out.weights_origin.sha256 == "0" * 64
    assert str(out.weights_origin) == f"random init sha256:{'0' * 16} (embeddings embeddings_{ENCODER}: random init)"
    assert out.metrics["balanced_accuracy"] > 0.5  # chance is 0.25 for the 4 toy classes
    row = get_model(filled, "dinov2_probe")
    versions = json.loads(row["table_versions_json"])
    assert set(versions) == {"galaxies", "splits", f"embeddings_{ENCODER}"}
    assert row["label_column"] == "label" and row["split_name"] == "label-s0-f70.15.15"
    assert Path(row["artefact_path"], "probe.npz").is_file()
    assert Path(row["artefact_path"], "confusion.png").is_file()
    metrics = json.loads(row["metrics_json"])
    assert set(metrics["test"]) >= {"balanced_accuracy", "accuracy", "macro_f1", "per_class_recall", "confusion"}
    out2 = train_model(filled, "dinov2_probe", make_config("dinov2_probe"))
    assert out2.version == 2
    assert out2.metrics == out.metrics  # same seed, same table versions


def test_gate_pixel_baseline_is_fitted_once_per_galaxies_and_a_bad_cache_is_refitted(filled):
    a = train_model(filled, "dinov2_probe", make_config("dinov2_probe"))
    files = list((Path(filled.cache_dir) / "gate").glob("pixels-*.npy"))
    assert len(files) == 1 and np.load(files[0]).shape == (a.gate.n,)
    logs: list[str] = []
    b = train_model(filled, "dinov2_probe", make_config("dinov2_probe"), log=logs.append)
    assert any("pixel probe from the cache" in m for m in logs)  # the same galaxies: not fitted again
    assert b.gate.as_dict() == a.gate.as_dict()
    files[0].write_bytes(b"not a numpy file")  # a cache file that cannot be read is refitted
    logs.clear()
    c = train_model(filled, "dinov2_probe", make_config("dinov2_probe"), log=logs.append)
    assert not any("from the cache" in m for m in logs) and c.gate.as_dict() == a.gate.as_dict()
    assert np.load(files[0]).shape == (a.gate.n,)
    other = train_model(filled, "dinov2_probe", make_config("dinov2_probe", seed=1))  # another seed: its own fit
    assert len(list((Path(filled.cache_dir) / "gate").glob("pixels-*.npy"))) == 2 and other.version == 4


@pytest.mark.skipif(len(__import__("os").sched_getaffinity(0)) < 2, reason="the side process needs a second core")
def test_gate_pixel_baseline_fitted_beside_the_probe_in_a_process_equals_the_gates_own(filled, monkeypatch):
    import features.parallel

    gate_dir = Path(filled.cache_dir) / "gate"
    monkeypatch.setattr(features.parallel, "POOL_MIN_ROWS", 0)  # the toy warehouse counts as Galaxy10-sized
    logs: list[str] = []
    beside = train_model(filled, "dinov2_probe", make_config("dinov2_probe"), log=logs.append)
    assert any("pixel probe from the cache" in m for m in logs)  # the side process filled the cache first
    assert not any("beside the fit failed" in m for m in logs)
    cached = np.load(next(gate_dir.glob("pixels-*.npy")))
    for f in gate_dir.glob("pixels-*.npy"):
        f.unlink()
    monkeypatch.setattr(features.parallel, "POOL_MIN_ROWS", 10**9)  # the demo's size: no side process
    logs.clear()
    alone = train_model(filled, "dinov2_probe", make_config("dinov2_probe"), log=logs.append)
    assert not any("from the cache" in m for m in logs)
    assert alone.gate.as_dict() == beside.gate.as_dict() and alone.metrics == beside.metrics
    assert np.array_equal(np.load(next(gate_dir.glob("pixels-*.npy"))), cached)


OLD_TRAIN_CONFIG = {  # a registry row's config_json before the per-kind configs: every kind's 34 fields
    "preset": "demo", "label_column": "label", "seed": 0, "split_seed": 0, "split_fractions": [0.7, 0.15, 0.15],
    "img_size": 64, "batch_size": 32, "epochs": 3, "lr": 0.001, "weight_decay": 0.05, "patience": 5,
    "label_smoothing": 0.0, "class_balanced": True, "augment": True, "amp": True, "max_steps": 0,
    "num_workers": -1, "device": "auto", "max_train": 0, "pretrained": True, "allow_random_init": True,
    "weights_path": "", "encoder": ENCODER, "layer_decay": 0.75, "head_lr_scale": 10.0, "init_from_probe": True,
    "gate_confidence": 0.95, "gate_resamples": 2000, "conformal_alpha": 0.1, "hidden": 64, "dropout": 0.2,
    "modality_dropout": 0.1, "ablate": True, "wandb_project": ""}


def test_each_kind_has_its_own_config_and_old_rows_still_load(filled):
    from models.config import FusionConfig, ImageConfig, ProbeConfig, config_from_json
    from stages.training import config_from_registry, retrain
    from stages.versions import record_model

    assert type(make_config("cnn")) is ImageConfig and type(make_config("fusion")) is FusionConfig
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['encoder'\] for cnn \(ImageConfig\)"):
        make_config("cnn", encoder="dinov2_vits14")
    old = json.dumps(OLD_TRAIN_CONFIG)
    cnn = config_from_json("cnn", old)
    assert (type(cnn), cnn.img_size, cnn.allow_random_init) == (ImageConfig, 64, True)
    assert not hasattr(cnn, "encoder") and not hasattr(cnn, "hidden")
    assert config_from_json("fusion", old) == FusionConfig(encoder=ENCODER, epochs=3, patience=5, batch_size=32,
                                                           lr=0.001, weight_decay=0.05)
    out = train_model(filled, "dinov2_probe", make_config("dinov2_probe"))
    row = get_model(filled, "dinov2_probe", 1)
    record_model(filled, {**row, "config_json": old})  # the row as the old code wrote it
    assert config_from_registry(filled, "dinov2_probe", 1) == ProbeConfig(encoder=ENCODER)
    assert load_predictor(filled, "dinov2_probe", 1).config == ProbeConfig(encoder=ENCODER)
    again = retrain(filled, "dinov2_probe", 1)
    assert again.version == 2 and again.metrics == out.metrics
    assert json.loads(get_model(filled, "dinov2_probe", 2)["config_json"]) == json.loads(
        ProbeConfig(encoder=ENCODER).to_json())


def test_training_set_reads_back_the_exact_split(filled):
    train_model(filled, "dinov2_probe")
    before = training_set(filled, "dinov2_probe", 1).sort_by("galaxy_id")
    # the warehouse moves on: more galaxies, a new split of the same name
    images, y = toy_images(16, 32, seed=9)
    gal, img = toy_rows(images, y, source="more", shard="more-00000")
    filled.upsert("galaxies", pa.table(gal))
    filled.upsert("images", pa.table(img))
    build_splits(filled)
    assert filled.count("splits") == 80
    again = training_set(filled, "dinov2_probe", 1).sort_by("galaxy_id")
    assert again.num_rows == 64
    assert again.select(["galaxy_id", "split"]).equals(before.select(["galaxy_id", "split"]))


def test_cnn_same_seed_same_versions_same_metrics(filled):
    a = train_model(filled, "cnn", _cnn_cfg())
    b = train_model(filled, "cnn", _cnn_cfg())
    assert (a.version, b.version) == (1, 2)
    assert a.metrics == b.metrics and a.val_metrics == b.val_metrics
    assert a.table_versions == b.table_versions
    assert [h["train_loss"] for h in a.fit["history"]] == [h["train_loss"] for h in b.fit["history"]]


def test_cnn_separates_toy_classes_well_above_chance(warehouse):
    """The 4-class toy set (chance balanced accuracy 0.25): the CNN must reach at least 0.6 on test."""
    _fill(warehouse, n=160, size=32, embeddings=False)
    cfg = make_config("cnn", img_size=32, epochs=8, batch_size=16, lr=3e-3, split_fractions=(0.6, 0.2, 0.2))
    out = train_model(warehouse, "cnn", cfg)
    assert out.metrics["balanced_accuracy"] >= 0.6, out.metrics
    assert out.gate.baselines["majority"]["difference_lower"] > 0.3  # far above the 1/K baseline


def test_missing_embeddings_table_is_a_clear_error(warehouse):
    _fill(warehouse, n=24, embeddings=False)
    with pytest.raises(MissingInputError, match=r"embeddings table 'embeddings_dinov2_vits14'"):
        train_model(warehouse, "dinov2_probe")
    assert not warehouse.exists("models")
    assert not any(Path(warehouse.models_dir).rglob("*.npz"))


def test_label_column_with_one_class_is_a_clear_error(warehouse):
    _fill(warehouse, n=24, extra=[{"ring": 1}] * 24, embeddings=False)
    with pytest.raises(LabelError, match="'ring' has a single class"):
        train_model(warehouse, "cnn", _cnn_cfg(label_column="ring"))
    assert not warehouse.exists("splits") and not warehouse.exists("models")


def test_ring_label_column_from_extra_json(warehouse):
    extra = [{"ring": i % 2} for i in range(40)]
    _fill(warehouse, n=40, extra=extra)
    out = train_model(warehouse, "dinov2_probe", make_config("dinov2_probe", label_column="ring"))
    assert out.names == ("0", "1") and out.split_name == "ring-s0-f70.15.15"
    assert get_model(warehouse, "dinov2_probe")["label_column"] == "ring"


def test_finetune_head_from_probe_only_with_the_same_weights(warehouse, tmp_path):
    import timm
    from safetensors.torch import save_file

    from features.weights import sha256_file

    # "pretrained" weights: a local file, whose SHA-256 the stored embeddings carry
    vit = timm.create_model("vit_small_patch14_dinov2", num_classes=0, img_size=28)
    path = tmp_path / "vits14.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    _fill(warehouse, n=48, encoder="dinov2_vits14", sha=sha256_file(path))
    train_model(warehouse, "dinov2_probe")
    cfg = make_config("dinov2_finetune", img_size=28, max_steps=1, batch_size=8,
                      weights_path=str(path), allow_random_init=False)
    out = train_model(warehouse, "dinov2_finetune", cfg)
    assert out.weights_origin.origin is WeightsOrigin.LOCAL and out.weights_origin.sha256 == sha256_file(path)
    assert str(out.weights_origin) == f"local sha256:{sha256_file(path)[:16]} (fine-tuned backbone dinov2_vits14)"
    assert out.notes[0] == "head initialised from dinov2_probe v1"
    assert out.notes[1] == "head standardisation re-estimated on 32 training galaxies at 28 px"
    # a random-init backbone does not inherit a probe fitted on other weights
    rnd = train_model(warehouse, "dinov2_finetune", replace(cfg, weights_path="", allow_random_init=True,
                                                           pretrained=False))
    assert rnd.weights_origin.is_random and str(rnd.weights_origin) == "random init (fine-tuned backbone dinov2_vits14)"
    assert rnd.notes[0].startswith("head initialised at zero: dinov2_probe v1 was fitted on embeddings of other")


def test_predictions_only_for_versions_that_passed_their_gate(warehouse):
    """Separable embeddings, label-blind stamps: the probe beats the baselines, the CNN cannot."""
    _fill(warehouse, n=96, separation=1.5, blind_images=True)
    probe = train_model(warehouse, "dinov2_probe")
    cnn = train_model(warehouse, "cnn", _cnn_cfg())
    assert probe.passed_gate and probe.gate.baselines["majority"]["balanced_accuracy"] == pytest.approx(0.25)
    assert probe.gate.baselines["majority"]["difference_lower"] > 0 and probe.gate.baselines["pixels"]["difference_lower"] > 0
    assert not cnn.passed_gate and "does not beat" in cnn.gate.reason
    rows = {r["name"]: r for r in list_models(warehouse)}
    assert rows["dinov2_probe"]["gate_passed"] and not rows["cnn"]["gate_passed"]
    assert json.loads(rows["cnn"]["gate_json"])["n"] == cnn.gate.n == cnn.n["test"]
    summary = predict_all(warehouse)
    assert summary["dinov2_probe v1"] == {"written": 96, "already": 0, "unavailable": 0, "gate": "passed",
                                          "left_out": False, "split_from": "recorded version",
                                          "mc_dropout": "no MC dropout: dinov2_probe is a linear probe on stored "
                                                        "embeddings (no dropout layer)"}
    assert summary["cnn v1"] == {"written": 0, "already": 0, "unavailable": 0, "gate": "failed", "left_out": True}
    written = warehouse.read("predictions", columns=["model_name"]).column("model_name").to_pylist()
    assert written == ["dinov2_probe"] * 96
    # asked for explicitly, the CNN's predictions are written, but the users' view shows passing models only
    assert predict_all(warehouse, gated=False)["cnn v1"]["written"] == 96
    view = warehouse.sql("SELECT model_name, count(*) AS n FROM latest_predictions GROUP BY 1").to_dicts()
    assert view == [{"model_name": "dinov2_probe", "n": 96}]


def test_predictions_cover_every_version_when_ungated(filled):
    train_model(filled, "dinov2_probe")
    cfg = make_config("dinov2_finetune", img_size=28, max_steps=1, batch_size=8)
    train_model(filled, "dinov2_finetune", cfg)
    pred = load_predictor(filled, "dinov2_finetune", 1)
    assert pred.config.encoder == ENCODER and pred.names == ["round", "cigar", "ring", "pair"]
    summary = predict_all(filled, gated=False)
    assert {k: v["written"] for k, v in summary.items()} == {"dinov2_finetune v1": 64, "dinov2_probe v1": 64}
    rows = filled.read("predictions").to_pylist()
    assert len(rows) == 128
    assert all(abs(sum(r["probabilities"]) - 1) < 1e-4 and len(r["probabilities"]) == 4 for r in rows)
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert predict_all(filled, gated=False)["dinov2_probe v1"]["already"] == 64


def test_rare_class_is_left_out_and_recorded(warehouse):
    """Class 3 has two galaxies: it cannot reach train, val and test, so the model trains on three classes."""
    labels = [0, 1, 2] * 20 + [3, 3]
    _fill(warehouse, n=62, labels=labels)
    out = train_model(warehouse, "dinov2_probe")
    assert out.names == ("round", "cigar", "ring") and out.classes == (0, 1, 2)
    assert set(out.excluded) == {"pair"} and sum(out.excluded["pair"].values()) == 2
    assert sum(out.n.values()) == 60
    row = get_model(warehouse, "dinov2_probe")
    assert json.loads(row["excluded_classes_json"]) == [{"name": "pair", **out.excluded["pair"]}]
    assert [c["name"] for c in json.loads(row["classes_json"])] == ["round", "cigar", "ring"]
    assert "left out of the label set" in out.notes[0] and "'pair'" in out.notes[0]
    # its galaxies still get predictions, over the three classes the model knows
    predict_all(warehouse, gated=False)
    pairs = warehouse.read("predictions", where="galaxy_id IN ('toy:000060', 'toy:000061')").to_pylist()
    assert len(pairs) == 2 and all(len(r["probabilities"]) == 3 for r in pairs)


def test_too_few_classes_for_every_split_trains_nothing(warehouse):
    _fill(warehouse, n=6, embeddings=False)  # 6 galaxies of 4 classes: no class reaches every split
    with pytest.raises(TooFewClassesError, match="fewer than two classes have a galaxy in each of train, val and test"):
        train_model(warehouse, "cnn", _cnn_cfg())
    assert not warehouse.exists("models")
    assert not any(Path(warehouse.models_dir).rglob("*.pt"))


def test_cli_train_with_label_and_list(warehouse, capsys):
    from service.cli import main

    extra = [{"ring": i % 2} for i in range(40)]
    _fill(warehouse, n=40, extra=extra)
    home = str(warehouse.root)
    assert main(["--home", home, "train", "dinov2_probe", "--label", "ring", "--quiet", "--predict"]) == 0
    out = capsys.readouterr().out
    assert "dinov2_probe v1" in out and "label 'ring'" in out and "RANDOM INIT" in out
    assert main(["--home", home, "train", "--list"]) == 0
    assert "dinov2_probe" in capsys.readouterr().out
    assert main(["--home", home, "train", "cnn", "--label", "bars", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "astrovision: error: galaxies: no galaxy has a value in label column 'bars' (40 galaxies read)"
    assert len(list_models(warehouse)) == 1
    assert main(["--home", home, "train", "dinov2_probe", "--epochs", "3"]) == 2  # the probe has no epochs
    assert capsys.readouterr().err.strip() == "astrovision: error: --epochs does not apply to dinov2_probe"

    from dagster_project.runner import instance_for

    runs = instance_for(warehouse).get_runs()  # both training attempts are Dagster runs, named
    assert sorted((r.job_name, r.status.value) for r in runs) == [("training_job", "FAILURE"),
                                                                  ("training_job", "SUCCESS")]


def test_cli_train_with_too_few_classes_is_one_line_exit_2(warehouse, capsys):
    from service.cli import main

    _fill(warehouse, n=6, embeddings=False)
    assert main(["--home", str(warehouse.root), "train", "cnn", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fewer than two classes have a galaxy in each of train, val and test" in err[0]
    assert not warehouse.exists("models")


def test_dagster_failed_gate_keeps_only_its_own_predictions_out(warehouse):
    import dagster as dg

    from dagster_project.defs.training.assets import cnn, dinov2_probe, predictions, splits
    from dagster_project.resources import WarehouseResource

    _fill(warehouse, n=96, separation=1.5, blind_images=True)
    res = dg.materialize(
        [splits, dinov2_probe, cnn, predictions],
        resources={"warehouse": WarehouseResource(root=str(warehouse.root))},
        run_config={"ops": {"cnn": {"config": {"img_size": 32, "epochs": 1, "batch_size": 16}}}},
    )
    assert res.success
    evals = {(e.asset_key.to_user_string(), e.check_name): e for e in res.get_asset_check_evaluations()}
    gates = {k: e.passed for k, e in evals.items() if k[1] != "scaling_keeps_val_ece"}
    assert gates == {
        ("splits", "no_leak"): True, ("dinov2_probe", "beats_baselines"): True, ("cnn", "beats_baselines"): False,
        ("predictions", "every_version_predicted"): True}
    for model in ("dinov2_probe", "cnn"):  # the calibration check: its verdict is the registry's
        cal = json.loads(get_model(warehouse, model, 1)["metrics_json"])["calibration"]
        check = evals[(model, "scaling_keeps_val_ece")]
        assert check.passed == (not cal["val_ece_raised"])
        assert check.metadata["temperature"].value == pytest.approx(cal["temperature"])
    gate = evals[("cnn", "beats_baselines")].metadata
    assert gate["split"].value == "test" and gate["confidence"].value == pytest.approx(0.95)
    assert gate["baseline_majority"].value == pytest.approx(0.25) and "baseline_pixels" in gate
    assert evals[("cnn", "beats_baselines")].severity == dg.AssetCheckSeverity.ERROR  # scratch CNN: not excused
    meta = {e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in res.get_asset_materialization_events()}
    assert meta["splits"]["train"].value + meta["splits"]["val"].value + meta["splits"]["test"].value == 96
    assert meta["dinov2_probe"]["confusion_matrix"].value.startswith("![confusion matrix](data:image/png;base64,")
    assert meta["dinov2_probe"]["reliability_diagram"].value.startswith("![reliability diagram](data:image/png;base64,")
    assert meta["cnn"]["random_init"].value is False and meta["cnn"]["gate_passed"].value is False
    assert meta["predictions"]["rows_written"].value == 96
    assert meta["predictions"]["predicted"].value == ["dinov2_probe v1"]
    assert meta["predictions"]["left_out_gate_failed"].value == ["cnn v1"]
    assert np.isfinite(meta["cnn"]["test_balanced_accuracy"].value)


def test_dagster_too_few_classes_skips_the_models_not_the_run(warehouse):
    import dagster as dg

    from dagster_project.defs.training.assets import cnn, predictions, splits
    from dagster_project.resources import WarehouseResource

    _fill(warehouse, n=6, embeddings=False)
    res = dg.materialize([splits, cnn, predictions],
                         resources={"warehouse": WarehouseResource(root=str(warehouse.root))})
    assert res.success
    meta = {e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in res.get_asset_materialization_events()}
    assert meta["cnn"]["skipped"].value is True and "fewer than two classes" in meta["cnn"]["reason"].value
    assert sum(sum(v.values()) for v in meta["cnn"]["excluded_classes"].value.values()) == 6
    check = next(e for e in res.get_asset_check_evaluations() if e.asset_key.to_user_string() == "cnn")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert meta["predictions"]["rows_written"].value == 0 and not warehouse.exists("models")


def test_train_result_owns_its_metadata_keys_both_ways():
    from stages.train_result import TrainResult

    done = TrainResult("cnn", 3, "")
    assert TrainResult.from_metadata("cnn", done.to_metadata()) == done
    assert done.to_metadata()["experiment_tracking"].startswith("off")
    tracked = TrainResult("fusion", 1, "W&B project p: /tmp/run")
    assert TrainResult.from_metadata("fusion", tracked.to_metadata()) == tracked
    skipped = TrainResult.from_metadata("cnn", TrainResult("cnn", skipped_reason="one class").to_metadata())
    assert skipped.skipped and skipped.skipped_reason == "one class" and skipped.version is None


def test_finetune_of_the_warehouse_own_encoder_when_auto_chose_it(warehouse):
    """Without DINOv2 weights ``auto`` fine-tunes the encoder in use, the warehouse's own ``ssl_resnet18``:
    its weights file, its 64 px input, the head from its probe; predictions rebuild it."""
    from features.ssl.config import SSLConfig
    from stages.embeddings import embed_shard, get_encoder
    from stages.predict import load_predictor
    from stages.ssl import ssl_weights, train_ssl_encoder

    _fill(warehouse, n=48, embeddings=False)
    train_ssl_encoder(warehouse, config=SSLConfig(epochs=1, batch_size=16), init="scratch")
    enc, _ = get_encoder("ssl_resnet18", wh=warehouse)
    embed_shard(warehouse, "toy-00000", enc)
    embed_shard(warehouse, "toy-00000", get_encoder("random_vits14")[0])  # the baseline beside it
    assert train_model(warehouse, "dinov2_probe").config.encoder == "ssl_resnet18"
    out = train_model(warehouse, "dinov2_finetune", make_config("dinov2_finetune", max_steps=2, batch_size=8))
    cfg = out.config
    assert cfg.encoder == "ssl_resnet18" and cfg.img_size == 64
    # it sees what the encoder embedded (galaxy-centred stamps, not whole frames: the probe's head was fitted
    # on those; the whole frame put the demo's start 0.17 below its probe)
    import torch

    from features.embeddings import pooled_features
    from models.data import GalaxyImageDataset, prepare_batch
    from stages.trainers import input_stamp

    assert input_stamp(cfg) == "galaxy" and input_stamp(make_config("cnn")) == "frame"
    rows = warehouse.read("embeddings_ssl_resnet18", columns=["galaxy_id", "vector"])
    ids = rows.column("galaxy_id").to_pylist()[:6]
    stored = np.asarray(rows.column("vector").to_pylist()[:6], np.float32)
    ds = GalaxyImageDataset(warehouse, ids, None, img_size=cfg.img_size, cache_mb=0, stamp=input_stamp(cfg))
    x = prepare_batch(torch.stack([ds[i][0] for i in range(len(ids))]), torch.device("cpu"))
    with torch.inference_mode():
        seen = pooled_features(enc.model, enc.model.forward_features(x)).numpy()
    assert np.allclose(seen, stored, atol=1e-4)
    assert cfg.weights_path == str(ssl_weights(warehouse, "ssl_resnet18").path)
    assert out.weights_origin.origin is WeightsOrigin.SELF_SUPERVISED
    assert out.weights_origin.sha256 == enc.weights_sha256
    assert str(out.weights_origin).endswith("(fine-tuned backbone ssl_resnet18)")
    assert out.notes[0] == "head initialised from dinov2_probe v1"
    row = get_model(warehouse, "dinov2_finetune", out.version)
    assert "fine-tuned backbone ssl_resnet18" in row["weights_origin"]
    fit = json.loads(row["metrics_json"])["fit"]
    vs = fit["vs_probe"]
    assert fit["backbone"] == "ssl_resnet18" and vs["probe"] == "dinov2_probe v1" and vs["n_test"] > 0
    # the probe-initialised start is scored on val as epoch 0 and kept unless an epoch beats it
    assert fit["history"][0]["epoch"] == 0 and fit["best_epoch"] in {h["epoch"] for h in fit["history"]}
    assert vs["ci95"][0] <= vs["difference"] <= vs["ci95"][1] and vs["beats_probe"] == (vs["ci95"][0] > 0)
    from service.commands.demo import _uncertainty_lines

    line = " ".join(_uncertainty_lines({"fit": fit}))
    assert "fine-tuned backbone ssl_resnet18; vs dinov2_probe v1 on the same" in line and "the probe)" in line
    import torch

    from models.registry import build_model

    model, _ = build_model("dinov2_finetune", 3, replace(cfg, pretrained=False))
    model.train()  # BatchNorm statistics stay those of the stored embeddings while the encoder trains
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms) and model.head.training
    pred = load_predictor(warehouse, "dinov2_finetune", out.version)
    probs = pred.predict(warehouse, ["toy:000000", "toy:000001"])
    assert probs.shape[0] == 2 and np.allclose(probs.sum(axis=1), 1, atol=1e-4)


def test_cnn_trains_on_its_budget_and_the_row_says_so(filled):
    """The demo preset caps the CNN's training galaxies (``TRAIN_BUDGETS``); a capped run records what it left out."""
    from models.config import TRAIN_BUDGETS

    assert make_config("cnn").max_train == TRAIN_BUDGETS["cnn"] == 2048
    assert make_config("cnn", preset="full").max_train == 0  # the GPU preset trains on every galaxy
    out = train_model(filled, "cnn", _cnn_cfg(max_train=20))
    row = get_model(filled, "cnn", out.version)
    n_train = filled.count("splits", where=f"split_name = '{out.split_name}' AND split = 'train'")
    assert n_train > 21
    assert out.fit["n_train_used"] <= 21  # at least one per class, rounded per class
    note = next(n for n in out.notes if n.startswith("budget:"))
    assert note in json.loads(row["metrics_json"])["notes"]
    assert f"of {n_train} training galaxies (max_train 20" in note
