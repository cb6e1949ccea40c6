"""The recipe of docs/architecture.md for a new classifier kind: one module plus one registry entry.

A toy kind is registered here (the registry monkeypatched, nothing else touched) and trained through the
same path as the shipped models: its Dagster asset comes from the asset factory, its run config from the
factory's default class, its presets from its registry entry, and ``finish_run`` gates, calibrates,
conformalizes and registers it; ``predictions`` then predicts it like any other image model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from toy_warehouse import fill_toy_warehouse

from features.weights import WeightsOrigin, WeightsProvenance
from models import registry
from models.registry import ModelSpec

TOY = "toy_linear"


def build_toy(num_classes: int, cfg, pretrained: bool) -> tuple[nn.Module, WeightsProvenance]:
    """A linear classifier on 8 x 8 average-pooled stamps (the "one new module" of the recipe)."""
    torch.manual_seed(cfg.seed)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(8), nn.Flatten(), nn.Linear(3 * 8 * 8, num_classes))
    return model, WeightsProvenance(WeightsOrigin.SCRATCH)


def fit_nearest_mean(wh, name, cfg, split, tmp: Path, log, notes):
    """A fitting step of the kind's own (:data:`stages.trainers.FitStep`): nearest class mean, as linear weights."""
    from models.data import GalaxyImageDataset, make_loader, prepare_batch
    from models.registry import build_model

    model, origin = build_model(name, split.num_classes, cfg)

    def features(s: str) -> torch.Tensor:
        ds = GalaxyImageDataset(wh, split.ids[s], None, img_size=cfg.img_size, cache_mb=0)
        xs = [prepare_batch(x, torch.device("cpu")) for x, _ in make_loader(ds, batch_size=32, shuffle=False)]
        return model[1](model[0](torch.cat(xs)))

    with torch.no_grad():
        x = features("train")
        y = torch.as_tensor(split.y["train"])
        mu = torch.stack([x[y == c].mean(0) for c in range(split.num_classes)])
        model[2].weight.copy_(2 * mu)
        model[2].bias.copy_(-(mu * mu).sum(1))
        probs = {s: torch.softmax(model[2](features(s)), 1).numpy().astype(np.float32) for s in ("val", "test")}
    torch.save(model.state_dict(), tmp / "model.pt")
    notes.append("nearest class mean")
    used = {s: (split.ids[s], split.y[s]) for s in ("train", "val", "test")}
    return probs, used, origin, {"seconds": 0.0, "n_train_used": len(split.ids["train"])}


TOY_PRESETS = {"demo": {"img_size": 16, "epochs": 2, "batch_size": 16, "lr": 5e-3}, "full": {"img_size": 64}}


@pytest.fixture
def toy_kind(monkeypatch):
    """Register the toy kind: the registry entry is the only change."""
    spec = ModelSpec(TOY, "images", "toy linear classifier on pooled stamps", build_toy, presets=TOY_PRESETS)
    monkeypatch.setitem(registry.MODELS, TOY, spec)
    return spec


def test_new_kind_trains_and_predicts_through_its_factory_asset(warehouse, toy_kind):
    import dagster as dg

    from dagster_project.defs.training.assets import predictions, splits, training_asset
    from dagster_project.resources import WarehouseResource
    from stages.versions import get_model

    fill_toy_warehouse(warehouse, n=96, size=32, embeddings=False)
    asset = training_asset(toy_kind)
    res = dg.materialize([splits, asset, predictions],
                         resources={"warehouse": WarehouseResource(root=str(warehouse.root))},
                         run_config={"ops": {"predictions": {"config": {"models": [TOY], "mc_passes": 0}}}})
    assert res.success
    row = get_model(warehouse, TOY, 1)
    cfg = json.loads(row["config_json"])
    assert (row["kind"], cfg["img_size"], cfg["epochs"]) == ("images", 16, 2)  # the entry's own demo preset
    assert json.loads(row["metrics_json"])["calibration"]["temperature"] > 0
    assert {e.check_name for e in res.get_asset_check_evaluations() if e.asset_key.to_user_string() == TOY} == {
        "beats_baselines", "scaling_keeps_val_ece"}
    assert warehouse.count("predictions", where=f"model_name = '{TOY}'") == 96 or not row["gate_passed"]


def test_new_kind_with_its_own_fitting_step(warehouse, toy_kind, monkeypatch):
    from models.config import make_config
    from stages.predict import load_predictor
    from stages.training import train_model

    spec = ModelSpec(TOY, "images", toy_kind.description, build_toy, presets=TOY_PRESETS,
                     fit_step=f"{fit_nearest_mean.__module__}:fit_nearest_mean")
    monkeypatch.setitem(registry.MODELS, TOY, spec)
    fill_toy_warehouse(warehouse, n=96, size=32, embeddings=False)
    out = train_model(warehouse, TOY, make_config(TOY))
    assert out.version == 1 and "nearest class mean" in out.notes
    assert out.metrics["balanced_accuracy"] > 0.5  # four toy classes: chance is 0.25
    assert (Path(out.artefact_dir) / "model.pt").is_file()
    pred = load_predictor(warehouse, TOY, 1)  # the registry's builder rebuilds it, like any image model
    ids = warehouse.read("galaxies", columns=["galaxy_id"]).column("galaxy_id").to_pylist()[:5]
    probs = pred.predict(warehouse, ids, device="cpu")
    assert probs.shape[1] == 4 and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_unknown_kind_without_fitting_step_is_a_clear_error():
    from stages.training import fit_step

    spec = ModelSpec(TOY, "tabular", "no step", None)
    with pytest.raises(ValueError, match="kind 'tabular', which has no fitting step"):
        fit_step(spec)


def test_every_run_config_field_is_a_field_of_its_models_config():
    """The asset's dg.Config maps onto the kind's own config in one place (``overrides``): no field is lost."""
    from dataclasses import fields

    from dagster_project.defs.training.config import model_config

    for name, spec in {**registry.MODELS, TOY: ModelSpec(TOY, "images", "toy", build_toy)}.items():
        run_fields = set(model_config(name).model_fields) - {"preset"}
        assert run_fields <= {f.name for f in fields(spec.config_cls)}, (name, run_fields)
