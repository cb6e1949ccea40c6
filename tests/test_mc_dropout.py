"""MC dropout (models/mc_dropout.py): entropy and mutual information, batch norm kept in eval, and the
per-galaxy columns of predictions (null with the reason for a model without dropout)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch import nn

from models.config import make_config
from models.mc_dropout import dropout_layers, entropy, mc_dropout_probs, mutual_information
from models.toy import toy_embeddings, toy_images, toy_rows
from stages.predict import predict_all
from stages.training import train_model
from warehouse.schemas.embeddings import embedding_spec


def test_entropy_and_mutual_information_by_hand():
    assert entropy(np.array([0.5, 0.5])) == pytest.approx(np.log(2))
    assert entropy(np.array([1.0, 0.0])) == 0.0
    agree = np.array([[[0.9, 0.1]], [[0.9, 0.1]]])
    disagree = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert mutual_information(agree)[0] == pytest.approx(0.0, abs=1e-12)
    assert mutual_information(disagree)[0] == pytest.approx(np.log(2))


def test_passes_sample_dropout_but_batch_norm_stays_in_eval():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3))
    model.eval()
    bn = model[1]
    before = bn.running_mean.clone()
    x = torch.randn(16, 4)
    s = mc_dropout_probs(model, [x], passes=6, seed=1)
    assert s.shape == (6, 16, 3) and not np.allclose(s[0], s[1])
    assert torch.equal(bn.running_mean, before) and not model.training  # eval restored, BN stats untouched
    assert np.allclose(mc_dropout_probs(model, [x], passes=6, seed=1), s)  # seeded
    with pytest.raises(ValueError, match="no dropout layer"):
        mc_dropout_probs(nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.0)), [x])
    assert dropout_layers(nn.Sequential(nn.Dropout(0.0))) == []


def test_predictions_carry_mc_dropout_or_say_why_not(warehouse):
    n = 64
    images, y = toy_images(n, 16, seed=5)
    gal, img = toy_rows(images, y)
    warehouse.upsert("galaxies", pa.table(gal))
    warehouse.upsert("images", pa.table(img))
    vec, patch = toy_embeddings(y, 384, seed=5, separation=1.0)
    warehouse.upsert("embeddings_random_vits14", pa.table({
        "galaxy_id": gal["galaxy_id"], "shard": gal["shard"], "encoder": ["random_vits14"] * n,
        "weights_sha256": ["0" * 64] * n, "weights_origin": ["random init"] * n, "flags": [1 << 32] * n,
        "vector": list(vec), "patch_mean": list(patch)}), spec=embedding_spec("random_vits14", 384))
    train_model(warehouse, "dinov2_probe", make_config("dinov2_probe", encoder="random_vits14", gate_resamples=100))
    train_model(warehouse, "cnn", make_config("cnn", img_size=16, epochs=1, max_steps=2, batch_size=16,
                                              gate_resamples=100))
    summary = predict_all(warehouse, gated=False, mc_passes=4)
    assert summary["cnn v1"]["mc_dropout"].startswith("MC dropout, 4 passes")
    rows = warehouse.read("predictions").to_pylist()
    cnn = [r for r in rows if r["model_name"] == "cnn"]
    probe = [r for r in rows if r["model_name"] == "dinov2_probe"]
    assert len(cnn) == len(probe) == n
    h = np.array([r["predictive_entropy"] for r in cnn])
    mi = np.array([r["mutual_information"] for r in cnn])
    assert (mi >= 0).all() and (mi <= h + 1e-9).all() and (h <= np.log(4) + 1e-9).all() and mi.max() > 0
    assert all(r["predictive_entropy"] is None and r["mutual_information"] is None for r in probe)
    assert {r["mc_dropout"] for r in probe} == {"no MC dropout: dinov2_probe is a linear probe on stored "
                                                 "embeddings (no dropout layer)"}
    view = warehouse.sql("SELECT * FROM uncertain_galaxies").to_dicts()  # only gated versions
    assert all(r["conformal_set_size"] > 1 or r["high_mutual_information"] for r in view)
    passed = {r["model_name"] for r in view}
    assert passed <= {"cnn", "dinov2_probe"}
