"""Hub / timm encoders (Zoobot's by name, ``hf_hub:<repo>``, ``timm:<model>``) on tiny checkpoints the tests make.

Every checkpoint is written by timm's own ``save_for_hf`` in exactly the Hub layout (``config.json`` +
``model.safetensors``), with tiny widths so the tests run in seconds; nothing touches the network.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from features.embeddings import (
    ENCODERS,
    choose_default_encoder,
    embed_images,
    encoder_spec,
    load_encoder,
    preprocess,
)
from features.errors import InputError, OfflineError
from features.weights import WeightsOrigin, sha256_file

ZOOBOT_REPO = "mwalmsley/zoobot-encoder-convnext_nano"
TINY = {"dims": (8, 16, 32, 64), "depths": (1, 1, 1, 1)}


def save_hub_checkpoint(directory: Path, arch: str = "convnext_nano", in_chans: int = 3, seed: int = 0,
                        **model_args) -> Path:
    """A tiny timm model saved by ``timm.models.save_for_hf``: ``config.json`` + ``model.safetensors``."""
    import timm
    import torch
    from timm.models import save_for_hf

    args = {**(model_args or TINY), "in_chans": in_chans}
    torch.manual_seed(seed)
    model = timm.create_model(arch, num_classes=0, **args)
    save_for_hf(model, str(directory), model_args=args, safe_serialization=True)
    return directory


@pytest.fixture
def weights_dir(offline, tmp_path, monkeypatch):
    """``$ASTROVISION_WEIGHTS_DIR`` holding a tiny checkpoint in the place of Zoobot's ConvNeXt-Nano."""
    root = tmp_path / "weights"
    save_hub_checkpoint(root / ZOOBOT_REPO)
    monkeypatch.setenv("ASTROVISION_WEIGHTS_DIR", str(root))
    return root


def _images(n: int, size: int = 48, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


# ------------------------------------------------------------------------------------ names
def test_zoobot_family_is_registered_as_its_model_cards_state():
    nano = ENCODERS["zoobot_convnext_nano"]
    assert nano.hf_repo == ZOOBOT_REPO and nano.timm_name == "convnext_nano" and nano.dim == 640
    assert nano.img_size == 224 and nano.in_chans == 3 and nano.in_domain and nano.hub
    assert nano.mean == (0.0, 0.0, 0.0) and nano.std == (1.0, 1.0, 1.0)  # [0, 1] pixels, no ImageNet norm
    grey = ENCODERS["zoobot_greyscale_convnext_nano"]
    assert grey.hf_repo == "mwalmsley/zoobot-encoder-greyscale-convnext_nano" and grey.in_chans == 1
    assert len(grey.mean) == len(grey.std) == 1
    assert {"zoobot_convnext_pico", "zoobot_convnext_base", "zoobot_resnet50", "zoobot_greyscale_convnext_pico"} \
        <= set(ENCODERS)


def test_hub_and_timm_names():
    assert encoder_spec(f"hf_hub:{ZOOBOT_REPO}") is ENCODERS["zoobot_convnext_nano"]  # the same table
    spec = encoder_spec("hf_hub:Some-One/tiny.Model_v2")
    assert spec.name == "hf_some_one_tiny_model_v2" and spec.hf_repo == "Some-One/tiny.Model_v2" and spec.hub
    spec = encoder_spec("timm:resnet18.a1_in1k")
    assert spec.name == "timm_resnet18_a1_in1k" and spec.hf_repo == "timm/resnet18.a1_in1k"
    assert spec.timm_name == "resnet18"
    for bad in ("hf_hub:no-owner", "hf_hub:a/b/c", "timm:not_a_model_at_all", "resnet_galaxy"):
        with pytest.raises(InputError, match="encoder"):
            encoder_spec(bad)


# ------------------------------------------------------------------------------------ loading
def test_zoobot_from_the_weights_dir_records_the_file_sha(weights_dir):
    enc = load_encoder("zoobot_convnext_nano")
    path = weights_dir / ZOOBOT_REPO / "model.safetensors"
    assert enc.weights_origin is WeightsOrigin.LOCAL and enc.weights_sha256 == sha256_file(path)
    assert enc.dim == 64 and enc.flags == 0  # the width its config.json states
    again = load_encoder(f"hf_hub:{ZOOBOT_REPO}")
    imgs = _images(3)
    v1, p1 = embed_images(imgs, enc)
    v2, _ = embed_images(imgs, again)
    assert v1.shape == (3, 64) and np.isfinite(v1).all()
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(v1, p1)  # a CNN: both outputs are the pooled head input


def test_the_loaded_weights_are_the_file_not_a_random_init(weights_dir, tmp_path):
    import timm
    from safetensors.torch import load_file

    enc = load_encoder("zoobot_convnext_nano")
    saved = load_file(str(weights_dir / ZOOBOT_REPO / "model.safetensors"))
    own = enc.model.state_dict()
    assert all(np.array_equal(own[k].numpy(), v.numpy()) for k, v in saved.items())
    other = save_hub_checkpoint(tmp_path / "other", seed=1)  # another file gives other vectors
    enc2 = load_encoder("zoobot_convnext_nano", other / "model.safetensors")
    assert enc2.weights_sha256 != enc.weights_sha256
    assert not np.allclose(embed_images(_images(2), enc)[0], embed_images(_images(2), enc2)[0])
    assert timm.is_model("convnext_nano")


def test_hugging_face_cache_layout(offline, tmp_path, monkeypatch):
    import huggingface_hub.constants as hfc

    cache = tmp_path / "hf"
    snap = cache / "models--someone--tiny-resnet" / "snapshots" / "abc123"
    save_hub_checkpoint(snap, arch="resnet18", channels=(8, 8, 16, 16), stem_width=8)
    (cache / "models--someone--tiny-resnet" / "refs").mkdir()
    (cache / "models--someone--tiny-resnet" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(cache))
    enc = load_encoder("hf_hub:someone/tiny-resnet")
    assert enc.weights_origin is WeightsOrigin.CACHE and enc.name == "hf_someone_tiny_resnet" and enc.dim == 16
    assert enc.spec.mean == pytest.approx((0.485, 0.456, 0.406))  # from its config.json (ImageNet's)
    assert np.isfinite(embed_images(_images(2), enc)[0]).all()


def test_offline_without_weights_is_one_clear_line_in_seconds(offline):
    t0 = time.perf_counter()
    with pytest.raises(OfflineError) as err:
        load_encoder("zoobot_convnext_nano")
    assert time.perf_counter() - t0 < 10
    msg = str(err.value)
    assert "\n" not in msg and ZOOBOT_REPO in msg and "HF_HUB_OFFLINE" in msg and "pytorch_model.bin" in msg


def test_weights_that_do_not_fit_name_the_file(offline, tmp_path):
    ckpt = save_hub_checkpoint(tmp_path / "resnet", arch="resnet18", channels=(8, 8, 16, 16), stem_width=8)
    with pytest.raises(InputError, match="names timm architecture 'resnet18'"):
        load_encoder("zoobot_convnext_nano", ckpt / "model.safetensors")
    alone = tmp_path / "alone" / "weights.safetensors"  # no config.json beside it: the registered architecture
    alone.parent.mkdir()
    alone.write_bytes((ckpt / "model.safetensors").read_bytes())
    with pytest.raises(InputError, match=r"weights\.safetensors do not fit timm model 'convnext_nano'"):
        load_encoder("zoobot_convnext_nano", alone)


def test_greyscale_encoder_sees_one_channel(offline, tmp_path, monkeypatch):
    root = tmp_path / "w"
    save_hub_checkpoint(root / "mwalmsley/zoobot-encoder-greyscale-convnext_nano", in_chans=1)
    monkeypatch.setenv("ASTROVISION_WEIGHTS_DIR", str(root))
    enc = load_encoder("zoobot_greyscale_convnext_nano")
    assert enc.spec.in_chans == 1
    img = np.zeros((32, 32, 3), dtype=np.uint8)
    img[..., 0] = 255  # red only: grey = 1/3
    x = preprocess([img], 16, mean=enc.spec.mean, std=enc.spec.std)
    assert x.shape == (1, 1, 16, 16) and float(x.mean()) == pytest.approx(1 / 3, abs=1e-4)
    assert embed_images(_images(2), enc)[0].shape == (2, 64)


# ------------------------------------------------------------------------------------ auto
def test_auto_prefers_in_domain_then_dinov2_then_random(weights_dir, tmp_path, monkeypatch):
    choice = choose_default_encoder()
    assert choice.name == "zoobot_convnext_nano" and choice.weights.origin is WeightsOrigin.LOCAL
    assert "in-domain" in str(choice)
    monkeypatch.setenv("ASTROVISION_WEIGHTS_DIR", str(tmp_path / "empty"))
    choice = choose_default_encoder()
    assert choice.name == "random_vits14" and "Zoobot" in choice.reason
    dino = tmp_path / "empty" / "vit_small_patch14_dinov2.lvd142m.safetensors"
    dino.parent.mkdir()
    dino.write_bytes(b"not read by the chooser")
    assert choose_default_encoder().name == "dinov2_vits14"


# ------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_zoobot_end_to_end_embeddings_search_probe_fusion(weights_dir, warehouse):
    """``auto`` picks the (tiny, test-made) Zoobot checkpoint; embeddings, search, probe and fusion run on it
    through a real ``dg.materialize``; every table and result says which encoder."""
    import dagster as dg
    from toy_warehouse import fill_toy_tabular, fill_toy_warehouse

    from dagster_project.defs.embeddings.assets import embedding_index, embeddings
    from dagster_project.defs.training.assets import dinov2_probe, fusion, splits
    from dagster_project.partitions import SHARDS
    from dagster_project.resources import WarehouseResource
    from stages.versions import get_model
    from warehouse import search

    gal, y = fill_toy_warehouse(warehouse, n=48, size=32, embeddings=False)
    fill_toy_tabular(warehouse, gal, y)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SHARDS.name, ["toy-00000"])
    res = dg.materialize([embeddings], partition_key="toy-00000", instance=instance,
                         resources={"warehouse": WarehouseResource(root=str(warehouse.root))})
    assert res.success and all(c.passed for c in res.get_asset_check_evaluations())
    meta = res.asset_materializations_for_node("embeddings")[0].metadata
    assert meta["table"].value == "embeddings_zoobot_convnext_nano" and meta["random_weights"].value is False
    assert "in-domain" in meta["encoder_note"].value
    assert list(meta["tables"].value) == ["embeddings_zoobot_convnext_nano"]  # alone: no random baseline beside
    stored = warehouse.read("embeddings_zoobot_convnext_nano")
    assert stored.num_rows == 48 and set(stored.column("weights_origin").to_pylist()) == {"local"}
    assert set(stored.column("weights_sha256").to_pylist()) == {
        sha256_file(weights_dir / ZOOBOT_REPO / "model.safetensors")}
    found = search.similar_plan(warehouse, gal["galaxy_id"][0], k=5)
    assert found.neighbours.height == 5 and found.neighbours["galaxy_id"][0] == gal["galaxy_id"][0]
    res = dg.materialize([embedding_index, splits, dinov2_probe, fusion], instance=instance,
                         resources={"warehouse": WarehouseResource(root=str(warehouse.root))},
                         run_config={"ops": {"fusion": {"config": {"epochs": 5, "ablate": False}}}})
    assert res.success
    for name in ("dinov2_probe", "fusion"):
        row = get_model(warehouse, name, 1)
        assert '"encoder": "zoobot_convnext_nano"' in row["config_json"]
        assert "embeddings_zoobot_convnext_nano" in row["table_versions_json"]


def test_a_named_hub_encoder_through_the_cli(weights_dir, warehouse, capsys):
    """``astrovision embed --encoder hf_hub:<repo>`` (a repository no name registers) and ``similar`` on it."""
    from toy_warehouse import fill_toy_warehouse

    from service.cli import main

    save_hub_checkpoint(weights_dir / "someone/tiny-resnet", arch="resnet18", channels=(8, 8, 16, 16), stem_width=8)
    gal, _ = fill_toy_warehouse(warehouse, n=12, size=32, embeddings=False)
    home = ["--home", str(warehouse.root)]
    assert main([*home, "embed", "--encoder", "hf_hub:someone/tiny-resnet", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "12 galaxies embedded with hf_someone_tiny_resnet (weights local" in out
    assert main([*home, "similar", gal["galaxy_id"][3], "-k", "3", "--encoder", "hf_someone_tiny_resnet"]) == 0
    assert gal["galaxy_id"][3] in capsys.readouterr().out
    rows = warehouse.read("embeddings_hf_someone_tiny_resnet")
    assert set(rows.column("encoder").to_pylist()) == {"hf_hub:someone/tiny-resnet"}  # what it loads by
    from stages.embeddings import embed_query_image

    vec, name = embed_query_image(warehouse, warehouse.read_image(gal["galaxy_id"][3]), "hf_someone_tiny_resnet")
    stored = rows.column("vector").to_pylist()[rows.column("galaxy_id").to_pylist().index(gal["galaxy_id"][3])]
    assert name == "hf_someone_tiny_resnet" and np.allclose(vec, stored, atol=1e-4)


@pytest.mark.slow
def test_finetune_of_zoobot_when_auto_chose_it(weights_dir, warehouse):
    """The fine-tune takes Zoobot's encoder when its embeddings are the ones in use: its input size, its
    [0, 1] normalisation (the adapter from the training stamps' ImageNet normalisation), its probe's head."""
    import torch
    from toy_warehouse import fill_toy_warehouse

    from models.config import make_config
    from models.dinov2 import InputAdapter
    from stages.embeddings import embed_shard, get_encoder
    from stages.training import train_model

    fill_toy_warehouse(warehouse, n=40, size=32, embeddings=False)
    enc, _ = get_encoder("zoobot_convnext_nano")
    embed_shard(warehouse, "toy-00000", enc)
    train_model(warehouse, "dinov2_probe")
    out = train_model(warehouse, "dinov2_finetune", make_config("dinov2_finetune", max_steps=1, batch_size=8))
    assert out.config.encoder == "zoobot_convnext_nano" and out.config.img_size == 224
    assert out.weights_origin.origin is WeightsOrigin.LOCAL and out.weights_origin.sha256 == enc.weights_sha256
    assert out.notes[0] == "head initialised from dinov2_probe v1"
    pixels = torch.rand(2, 3, 8, 8)
    imagenet = (pixels - torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)) / torch.tensor(
        (0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    torch.testing.assert_close(InputAdapter((0.0,) * 3, (1.0,) * 3)(imagenet), pixels)
    torch.testing.assert_close(InputAdapter((0.0,), (1.0,))(imagenet), pixels.mean(dim=1, keepdim=True))
