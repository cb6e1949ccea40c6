"""The one training loop: class weights, timm schedule, early stopping with best-state restore, every kind on it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from models.fusion import fit_fusion
from models.fusion_data import MODALITIES, Modalities
from models.loop import LoopConfig, class_weights, cosine_schedule, train_loop
from models.registry import MODELS
from models.segfit import SegFitConfig, fit_segmenter
from models.unet import build_unet


def test_class_weights_are_sklearns_balanced_over_the_classes_present():
    counts = [30, 10, 0, 20]
    y = np.repeat(np.arange(4), counts)
    w = class_weights(counts)
    ref = compute_class_weight("balanced", classes=np.array([0, 1, 3]), y=y)
    assert w[2].item() == 0.0
    assert torch.allclose(w[[0, 1, 3]], torch.as_tensor(ref, dtype=torch.float32))
    # fusion used to divide by num_classes (4), fit.py by the classes present (3): the loop's rule is the latter
    assert w[0].item() == pytest.approx(60 / (3 * 30))
    assert torch.equal(class_weights([5, 5, 5]), torch.ones(3))


def test_cosine_schedule_warms_up_from_zero_then_decays_to_zero_per_group():
    p1, p2 = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [p1], "lr": 1.0}, {"params": [p2], "lr": 0.1}])
    sched = cosine_schedule(opt, total_steps=12, warmup_steps=2)
    lrs = []
    for t in range(12):
        sched.step_update(t)
        lrs.append([g["lr"] for g in opt.param_groups])
    assert lrs[0] == [0.0, 0.0] and lrs[1][0] == pytest.approx(0.5)
    assert lrs[2][0] == pytest.approx(1.0)  # the peak right after the warm-up
    assert lrs[7][0] == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 10)))
    assert all(b == pytest.approx(a / 10) for a, b in lrs)  # each group keeps its own peak


def test_a_groups_lr_scale_is_not_applied_twice():
    """Regression: timm's scheduler multiplies by "lr_scale", which the DINOv2 layer-decay groups carry
    although their "lr" already includes it (the demo's dinov2_finetune trained at squared rates)."""
    p1, p2 = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [p1], "lr": 0.5, "lr_scale": 0.5}, {"params": [p2], "lr": 10.0,
                                                                            "lr_scale": 10.0}])
    sched = cosine_schedule(opt, total_steps=4)
    sched.step_update(0)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 10.0]


def test_early_stopping_restores_the_best_epoch_and_stops_after_patience():
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scores = iter([0.5, 0.9, 0.7, 0.8, 0.95])
    kept: dict[int, float] = {}

    def step(batch):
        return model(batch).pow(2).mean(), len(batch)

    def score(epoch):
        kept[epoch] = float(model.weight.detach().sum())
        return {"acc": next(scores)}

    out = train_loop(model, opt, lambda e: [torch.ones(4, 2)] * 3, step,
                     LoopConfig(epochs=5, patience=2, select="acc", schedule="constant"), steps_per_epoch=3,
                     score=score)
    assert [h["epoch"] for h in out.history] == [1, 2, 3, 4]  # epochs 3 and 4 not better: stop
    assert out.best_epoch == 2 and out.best_score == 0.9 and out.steps == 12
    assert float(model.weight.detach().sum()) == pytest.approx(kept[2])


def test_score_start_keeps_the_start_when_no_epoch_beats_it():
    """A fine-tune initialised from a probe is scored before its first step; if training only makes
    validation worse, the weights it started from are what the run keeps (epoch 0)."""
    model = nn.Linear(2, 1)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scores = iter([0.8, 0.6, 0.7, 0.5])  # epoch 0 (the start), then 1-3
    saved: list[int] = []
    out = train_loop(model, opt, lambda e: [torch.ones(4, 2)] * 3, lambda b: (model(b).pow(2).mean(), len(b)),
                     LoopConfig(epochs=3, select="acc", score_start=True, schedule="constant"), steps_per_epoch=3,
                     score=lambda epoch: {"acc": next(scores)}, on_improve=lambda e, state: saved.append(e))
    assert [h["epoch"] for h in out.history] == [0, 1, 2, 3] and out.steps == 9
    assert out.best_epoch == 0 and out.best_score == 0.8 and saved == [0]
    for k, v in model.state_dict().items():
        assert torch.equal(v, start[k])


def test_score_start_gives_way_to_a_better_epoch():
    model = nn.Linear(2, 1)
    scores = iter([0.5, 0.9, 0.7])
    out = train_loop(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda e: [torch.ones(4, 2)] * 2,
                     lambda b: (model(b).pow(2).mean(), len(b)),
                     LoopConfig(epochs=2, select="acc", score_start=True, schedule="constant"), steps_per_epoch=2,
                     score=lambda epoch: {"acc": next(scores)})
    assert out.best_epoch == 1 and out.best_score == 0.9


def test_max_steps_ends_the_run_mid_epoch():
    model = nn.Linear(2, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    out = train_loop(model, opt, lambda e: [torch.ones(4, 2)] * 5, lambda b: (model(b).pow(2).mean(), len(b)),
                     LoopConfig(epochs=3, max_steps=7), steps_per_epoch=5)
    assert out.steps == 7 and len(out.history) == 2


def test_every_registered_kind_has_a_fitting_step():
    from stages.training import FIT_STEPS

    assert {spec.kind for spec in MODELS.values()} <= set(FIT_STEPS)


def _modalities(n, seed):
    rng = np.random.default_rng(seed)
    x = {m: rng.normal(size=(n, 3)) for m in MODALITIES}
    return Modalities([f"g{i}" for i in range(n)], x, {m: np.ones(n, bool) for m in MODALITIES},
                      {m: [f"{m}{j}" for j in range(3)] for m in MODALITIES}, {})


def test_fusion_forward_shape_and_two_epoch_seeded_fit_on_the_loop():
    data, y = _modalities(24, 0), np.arange(24) % 2
    fits = [fit_fusion(data, y, data, y, modalities=MODALITIES, num_classes=2, seed=3, epochs=2, patience=5,
                       batch_size=8) for _ in range(2)]
    assert fits[0].predict_proba(data).shape == (24, 2)
    strip = [[{k: v for k, v in h.items() if k != "seconds"} for h in f.history] for f in fits]
    assert strip[0] == strip[1] and len(strip[0]) == 2
    assert np.array_equal(fits[0].predict_proba(data), fits[1].predict_proba(data))


def test_unet_forward_shape_and_two_step_seeded_fit_on_the_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (8, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 3, (8, 32, 32), generator=g, dtype=torch.uint8)
    cfg = SegFitConfig(size=32, epochs=1, batch_size=4, base=4, depth=2, max_steps=2)
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_unet(3, base=4, depth=2)
        assert model(x[:2].float() / 255).shape == (2, 3, 32, 32)
        res = fit_segmenter(model, (x, y), (x[:4], y[:4]), cfg, seed=5)
        assert res.steps == 2 and res.best_epoch == 1
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
