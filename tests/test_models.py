"""Every registered model: forward shapes, first loss ln K, a seeded two-step fit; probe, heads, data, metrics."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from features.errors import OfflineError
from features.weights import WeightsOrigin
from models.config import make_config
from models.data import GalaxyAugment, GalaxyImageDataset, make_loader, prepare_batch
from models.dinov2 import StandardizedHead, layerwise_param_groups
from models.errors import TrainingError, WeightsUnavailableError
from models.fit import FitConfig, class_weights, fit, recalibrate_bn
from models.metrics import classification_metrics, confusion_png
from models.probe import LinearProbe, fit_probe
from models.registry import MODELS, build_model
from models.toy import toy_images

IMAGE_MODELS = [name for name, spec in MODELS.items() if spec.kind == "images"]
TINY = {"cnn": 32, "efficientnet_b0": 32, "dinov2_finetune": 28}
K = 4


class _Reader:
    """Stands in for the warehouse: ``read_images`` by id."""

    def __init__(self, images):
        self.images = {f"g{i}": im for i, im in enumerate(images)}
        self.calls = 0

    def read_images(self, ids):
        self.calls += 1
        return [self.images[g] for g in ids]


def _loaders(n=16, size=32, batch=4, seed=0):
    images, y = toy_images(n, size, seed=seed)
    ds = GalaxyImageDataset(_Reader(images), [f"g{i}" for i in range(n)], y, img_size=size)
    return (make_loader(ds, batch_size=batch, shuffle=True, seed=seed),
            make_loader(ds, batch_size=8, shuffle=False))


def _build(name):
    extra = {"encoder": "random_vits14"} if name == "dinov2_finetune" else {}
    cfg = make_config(name, img_size=TINY[name], allow_random_init=True, **extra)
    model, origin = build_model(name, K, cfg, pretrained=False)
    return model, origin


def test_registry_lists_the_four_models():
    assert set(MODELS) == {"cnn", "efficientnet_b0", "dinov2_probe", "dinov2_finetune", "fusion"}


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_forward_shapes_and_initial_loss_is_ln_k(name):
    torch.manual_seed(0)
    model, origin = _build(name)
    model.eval()
    x = torch.randn(2, 3, TINY[name], TINY[name])
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    assert feats.shape == (2, model.num_features)
    assert logits.shape == (2, K)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3]))
    assert loss.item() == pytest.approx(math.log(K), abs=1e-5)  # zero-initialised head
    assert origin.origin in (WeightsOrigin.SCRATCH, WeightsOrigin.RANDOM_INIT) and origin.sha256 is None


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_two_step_seeded_fit(name):
    torch.manual_seed(0)
    model, _ = _build(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train, val = _loaders(n=8, size=TINY[name], batch=4)
    res = fit(model, train, val, FitConfig(epochs=1, max_steps=2, amp=False), seed=7, num_classes=K)
    assert res.steps == 2 and res.best_epoch == 1
    assert math.isfinite(res.history[0]["train_loss"]) and math.isfinite(res.history[0]["val_loss"])
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if "head" in k)
    assert 0.0 <= res.data_wait_fraction < 1.0 and res.images_per_s > 0


def test_seeded_fit_is_bitwise_reproducible_on_cpu():
    states, histories = [], []
    for _ in range(2):
        torch.manual_seed(0)
        model, _ = _build("cnn")
        train, val = _loaders()
        res = fit(model, train, val, FitConfig(epochs=2, max_steps=6, amp=False), seed=7, num_classes=K)
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        histories.append([{k: v for k, v in h.items() if k != "seconds"} for h in res.history])
    assert histories[0] == histories[1]
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_fit_writes_checkpoint_and_logs(tmp_path):
    torch.manual_seed(0)
    model, _ = _build("cnn")
    train, val = _loaders()
    lines: list[str] = []
    res = fit(model, train, val, FitConfig(epochs=2, max_steps=3), seed=0, log=lines.append,
              num_classes=K, checkpoint_dir=tmp_path)
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "fit_config.json").is_file()
    assert res.checkpoint == str(tmp_path / "best.pt")
    assert any(line.startswith("epoch 1/2") for line in lines)
    assert res.best_epoch in (1, 2)


def test_pretrained_backbone_never_silently_random(monkeypatch):
    import features.weights as fw

    def offline(*args, **kwargs):
        raise OfflineError("weights timm/efficientnet_b0.ra_in1k/model.safetensors are not available")

    monkeypatch.setattr(fw, "resolve_weights", offline)
    strict = make_config("efficientnet_b0", allow_random_init=False)
    with pytest.raises(WeightsUnavailableError, match="allow_random_init"):
        build_model("efficientnet_b0", K, strict)
    _, origin = build_model("efficientnet_b0", K, make_config("efficientnet_b0", allow_random_init=True))
    assert origin.origin is WeightsOrigin.RANDOM_INIT and str(origin) == "random init"
    with pytest.raises(WeightsUnavailableError, match="random-weights baseline"):
        build_model("dinov2_finetune", K, make_config("dinov2_finetune", encoder="random_vits14",
                                                       img_size=28, allow_random_init=False))


def test_dinov2_layerwise_lr_follows_the_decay_schedule():
    """timm's groups from the ViT's group_matcher: stem lr*d^L, block i lr*d^(L-1-i), final norm lr, head 10 lr."""
    model, _ = _build("dinov2_finetune")
    lr, decay = 1e-4, 0.5
    groups = layerwise_param_groups(model, lr=lr, weight_decay=0.05, layer_decay=decay, head_lr_scale=10)
    group_of = {id(p): g for g in groups for p in g["params"]}
    vit = model.encoder.vit
    n_blocks = len(vit.blocks)
    assert n_blocks == 12

    def lrs(params):
        return sorted({group_of[id(p)]["lr"] for p in params})

    for i, block in enumerate(vit.blocks):
        assert lrs(block.parameters()) == pytest.approx([lr * decay ** (n_blocks - 1 - i)]), i
    assert lrs([vit.cls_token, vit.pos_embed, *vit.patch_embed.parameters()]) == pytest.approx(
        [lr * decay ** n_blocks])
    assert lrs(vit.norm.parameters()) == pytest.approx([lr])
    assert lrs(model.head.parameters()) == pytest.approx([10 * lr])
    # every trainable parameter in exactly one group; no weight decay on 1-D parameters and tokens
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)
    assert len(group_of) == sum(1 for p in model.parameters() if p.requires_grad)
    assert all(group_of[id(p)]["weight_decay"] == 0 for p in model.parameters() if p.ndim <= 1)
    assert group_of[id(vit.cls_token)]["weight_decay"] == 0 and group_of[id(vit.pos_embed)]["weight_decay"] == 0
    assert group_of[id(vit.blocks[0].attn.qkv.weight)]["weight_decay"] == 0.05


def test_head_initialised_from_probe_reproduces_probe_logits():
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = rng.normal(0, 1, (60, 8)) * rng.uniform(0.1, 20, 8) + rng.normal(0, 5, 8) + y[:, None]
    probe = fit_probe(x[:40], y[:40], x[40:], y[40:], num_classes=3)
    head = StandardizedHead(8, 3)
    head.init_from_probe(probe.mean, probe.scale, probe.coef, probe.intercept)
    with torch.no_grad():
        got = head(torch.as_tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, probe.logits(x), rtol=1e-4, atol=1e-3)


# ------------------------------------------------------------------------------------------- probe
def test_probe_binary_matches_sklearn_and_round_trips(tmp_path):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    y = np.arange(80) % 2
    x = rng.normal(0, 1, (80, 5)) + 0.8 * y[:, None]
    probe = fit_probe(x[:60], y[:60], x[60:], y[60:], Cs=[0.3])
    xs = (x[:60] - probe.mean) / probe.scale
    ref = LogisticRegression(C=0.3, class_weight="balanced", max_iter=2000).fit(xs, y[:60])
    np.testing.assert_allclose(probe.predict_proba(x[60:]),
                               ref.predict_proba((x[60:] - probe.mean) / probe.scale), atol=1e-6)
    back = LinearProbe.load(probe.save(tmp_path / "p.npz"))
    np.testing.assert_array_equal(back.coef, probe.coef)
    assert back.C == 0.3 and back.val_scores == probe.val_scores


def test_probe_chooses_c_on_validation():
    rng = np.random.default_rng(2)
    y = np.arange(120) % 3
    x = rng.normal(0, 1, (120, 50))
    x[:, :3] += 1.5 * np.eye(3)[y]  # 3 informative dimensions among 50 noisy ones
    probe = fit_probe(x[:60], y[:60], x[60:], y[60:])
    assert len(probe.val_scores) == 13
    assert probe.val_scores[probe.C] == max(probe.val_scores.values())
    assert probe.val_scores[probe.C] > 0.6


def test_probe_rejects_nan_features():
    x = np.zeros((6, 3))
    x[4, 1] = np.nan
    with pytest.raises(TrainingError, match=r"1 training embedding\(s\) hold NaN or inf \(first row 4\)"):
        fit_probe(x, np.array([0, 1] * 3), x[:2] * 0, np.array([0, 1]))


# ------------------------------------------------------------------------------------------- data
def test_dataset_reads_one_batch_per_take_and_caches():
    images, y = toy_images(8, 40)
    reader = _Reader(images)
    ds = GalaxyImageDataset(reader, [f"g{i}" for i in range(8)], y, img_size=24)
    items = ds.__getitems__([0, 3, 5])
    assert reader.calls == 1
    assert items[0][0].shape == (3, 24, 24) and items[0][0].dtype == torch.uint8
    assert [t for _, t in items] == [int(y[0]), int(y[3]), int(y[5])]
    ds.__getitems__([0, 3])
    assert reader.calls == 1  # cached stamps


@pytest.mark.parametrize("stamp", ["frame", "galaxy"])
def test_dataset_threads_read_parts_side_by_side_and_give_the_same_stamps(stamp):
    images, y = toy_images(11, 40)
    ids = [f"g{i}" for i in range(11)]
    plain = GalaxyImageDataset(_Reader(images), ids, y, img_size=24, cache_mb=0, stamp=stamp)
    reader = _Reader(images)
    threaded = GalaxyImageDataset(reader, ids, y, img_size=24, cache_mb=0, stamp=stamp, threads=3)
    order = [10, 2, 7, 0, 5, 9, 1]
    for (xa, ya), (xb, yb) in zip(threaded.__getitems__(order), plain.__getitems__(order)):
        assert torch.equal(xa, xb) and ya == yb
    assert reader.calls == 3  # one read per thread's part
    assert len(threaded.__getitems__([4])) == 1 and reader.calls == 4  # one galaxy: one read


def test_dataset_threads_pass_a_read_error_on():
    class Broken(_Reader):
        def read_images(self, ids):
            if "g5" in ids:
                raise OSError("truncated PNG in g5")
            return super().read_images(ids)

    images, y = toy_images(8, 40)
    ds = GalaxyImageDataset(Broken(images), [f"g{i}" for i in range(8)], y, img_size=24, threads=2)
    with pytest.raises(OSError, match="truncated PNG in g5"):
        ds.__getitems__(list(range(8)))


def test_background_cache_fill_caches_every_stamp_without_changing_a_batch():
    from models.data import background_cache_fill

    images, y = toy_images(40, 40)
    plain = GalaxyImageDataset(_Reader(images), [f"g{i}" for i in range(40)], y, img_size=24)
    filled = GalaxyImageDataset(_Reader(images), [f"g{i}" for i in range(40)], y, img_size=24)
    with background_cache_fill(filled):
        batches = [b for b in make_loader(filled, batch_size=8, shuffle=True, seed=3)]
    expected = [b for b in make_loader(plain, batch_size=8, shuffle=True, seed=3)]
    assert len(batches) == len(expected) == 5
    for (xa, ya), (xb, yb) in zip(batches, expected):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert filled.fill_cache() == 40 and filled.reader.calls <= 5 + 5  # thread and loader share the work

    tiny = GalaxyImageDataset(_Reader(images), [f"g{i}" for i in range(40)], y, img_size=24, cache_mb=0.01)
    assert not tiny.fits_in_cache
    with background_cache_fill(tiny):  # the split does not fit: no thread, nothing cached ahead
        pass
    assert tiny.reader.calls == 0


def test_background_cache_fill_leaves_a_read_error_to_the_training_thread():
    from models.data import background_cache_fill

    class Broken(_Reader):
        def read_images(self, ids):
            raise OSError("truncated PNG")

    images, y = toy_images(8, 40)
    ds = GalaxyImageDataset(Broken(images), [f"g{i}" for i in range(8)], y, img_size=24)
    with pytest.raises(OSError, match="truncated PNG"), background_cache_fill(ds):
        next(iter(make_loader(ds, batch_size=4, shuffle=False)))


def test_augment_is_seeded_and_keeps_range():
    x = torch.rand(4, 3, 32, 32)
    aug = GalaxyAugment()
    a = aug(x, torch.Generator().manual_seed(0))
    b = aug(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    assert a.min() >= 0 and a.max() <= 1
    # a centred round blob keeps its total light under rotation and flips (within the mild gain)
    yy, xx = torch.meshgrid(torch.arange(32.0) - 15.5, torch.arange(32.0) - 15.5, indexing="ij")
    blob = torch.exp(-(xx**2 + yy**2) / 30).expand(1, 3, 32, 32).clone()
    out = GalaxyAugment(max_shift=0, scale_range=(1, 1), brightness=0, colour=0)(blob, torch.Generator().manual_seed(3))
    assert out.sum().item() == pytest.approx(blob.sum().item(), rel=0.02)


def test_prepare_batch_normalises():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = prepare_batch(x, torch.device("cpu"))
    assert out[0, 0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229)


def test_bn_recalibration_closes_train_eval_gap():
    torch.manual_seed(0)
    model, _ = _build("cnn")
    train, _ = _loaders()
    x = prepare_batch(next(iter(train))[0], torch.device("cpu"))
    assert recalibrate_bn(model, train, torch.device("cpu"), 100) == 4
    model.eval()
    with torch.no_grad():
        feats_eval = model.encoder[:1](x)
    model.train()
    with torch.no_grad():
        feats_train = model.encoder[:1](x)
    assert (feats_eval - feats_train).abs().mean() < 0.2 * feats_train.abs().mean()


def test_class_weights_inverse_frequency():
    w = class_weights([30, 10, 0])
    assert w.tolist() == pytest.approx([40 / 60, 40 / 20, 0.0])


# ------------------------------------------------------------------------------------------- metrics
def test_metrics_known_values():
    m = classification_metrics(np.array([0, 0, 0, 1, 2, 2]), np.array([0, 0, 1, 1, 2, 0]), ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    assert m["per_class_recall"] == pytest.approx({"a": 2 / 3, "b": 1.0, "c": 0.5})
    assert m["confusion"] == [[2, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert m["chance_balanced_accuracy"] == pytest.approx(1 / 3)
    png = confusion_png(m["confusion"], ["a", "b", "c"], title="t")
    assert Image.open(io.BytesIO(png)).format == "PNG"


def test_metrics_absent_class_recall_is_nan():
    m = classification_metrics(np.array([0, 1]), np.array([0, 0]), ["a", "b", "c"])
    assert math.isnan(m["per_class_recall"]["c"])
    assert m["balanced_accuracy"] == pytest.approx(0.5)
