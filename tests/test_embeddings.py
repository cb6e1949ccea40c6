"""Encoder registry, preprocessing, inference, the embeddings table and the Dagster assets."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from toy_warehouse import write_image_shard

from features.embeddings import (
    ENCODERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    choose_default_encoder,
    embed_images,
    image_flags,
    in_baseline_sample,
    load_encoder,
    load_image_file,
    preprocess,
)
from features.errors import InputError, OfflineError
from features.flags import Flag
from features.weights import WeightsOrigin
from warehouse import schemas
from warehouse.schemas.embeddings import KNOWN_ENCODER_DIMS, embedding_spec

SIZE = 28  # tiny input for speed: 2 x 2 patches


@pytest.fixture(scope="module")
def tiny_random():
    return load_encoder("random_vits14", img_size=SIZE)


def _images(n: int, size: int = 32, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def write_tiny_shard(wh, n: int = 5, shard: str = "demo-00000", size: int = 32, nan_image: bool = False) -> list[str]:
    """``galaxies`` and ``images`` rows of one shard, written directly through the warehouse."""
    ids = [f"demo:{shard[-5:]}{i:03d}" for i in range(n)]
    images: list[np.ndarray] = list(_images(n, size))
    if nan_image:
        bad = images[0].astype(np.float32) / 255.0
        bad[0, 0, 0] = np.nan
        images[0] = bad
    return write_image_shard(wh, ids, images, shard)


# ------------------------------------------------------------------------------------ registry
def test_registry_widths_match_the_warehouse_tables():
    # a Hub encoder's width is what its config.json states: its table is registered when it is built
    assert {k: s.dim for k, s in ENCODERS.items() if not s.hub} == KNOWN_ENCODER_DIMS
    for name, dim in KNOWN_ENCODER_DIMS.items():
        spec = schemas.get(f"embeddings_{name}")
        assert spec.columns.field("vector").type == pa.list_(pa.float32(), dim)
    assert ENCODERS["random_vits14"].is_random and not ENCODERS["dinov2_vits14"].is_random


def test_embedding_spec_rejects_a_second_width():
    embedding_spec("test_enc_a", 16)
    assert embedding_spec("test_enc_a", 16).name == "embeddings_test_enc_a"
    with pytest.raises(ValueError, match="width"):
        embedding_spec("test_enc_a", 32)


# ------------------------------------------------------------------------------------ preprocessing
def test_preprocess_resizes_and_normalises():
    grey = np.full((40, 40, 3), 128, dtype=np.uint8)
    x = preprocess([grey], img_size=SIZE)
    assert x.shape == (1, 3, SIZE, SIZE)
    want = (128 / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(x[0].mean(dim=(1, 2)).numpy(), want, atol=1e-5)


def test_preprocess_accepts_grey_rgba_flux_and_mixed_sizes():
    grey = np.full((20, 20), 51, dtype=np.uint8)
    rgba = np.zeros((30, 30, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    blank_flux = np.full((24, 24, 1), 0.5, dtype=np.float32)  # features.pixels: no contrast -> 0
    x = preprocess([grey, rgba, blank_flux], img_size=SIZE)
    assert torch.allclose(x[0, 0], (0.2 - IMAGENET_MEAN[0]) / torch.tensor(IMAGENET_STD[0]) * torch.ones(SIZE, SIZE),
                          atol=1e-5)
    assert torch.allclose(x[1, 2].mean(), torch.tensor((1 - IMAGENET_MEAN[2]) / IMAGENET_STD[2]), atol=1e-5)
    assert torch.allclose(x[2, 1], -IMAGENET_MEAN[1] / torch.tensor(IMAGENET_STD[1]) * torch.ones(SIZE, SIZE),
                          atol=1e-5)


def test_preprocess_bad_shape_names_the_image():
    with pytest.raises(InputError, match="image 3"):
        preprocess([np.zeros((8, 8, 3))] * 3 + [np.zeros((8, 8, 5))], start=0)


def test_image_flags():
    nan = np.zeros((4, 4, 3), np.float32)
    nan[0, 0, 0] = np.nan
    assert image_flags(nan) == Flag.IMAGE_NAN | Flag.IMAGE_BLANK
    assert image_flags(np.zeros((4, 4, 3), np.uint8)) == Flag.IMAGE_BLANK
    assert image_flags(_images(1)[0]) == 0


# ------------------------------------------------------------------------------------ inference
def test_embed_is_deterministic_with_cls_and_patch_mean(tiny_random):
    imgs = _images(5)
    cls, pm = embed_images(imgs, tiny_random, batch_size=2)
    cls2, pm2 = embed_images(np.stack(imgs), tiny_random, batch_size=5)  # array path, other batching
    assert cls.shape == pm.shape == (5, 384) and cls.dtype == np.float32
    np.testing.assert_allclose(cls, cls2, atol=1e-5)
    np.testing.assert_allclose(pm, pm2, atol=1e-5)
    assert not np.allclose(cls, pm)
    with torch.inference_mode():
        tokens = tiny_random.model.forward_features(preprocess(imgs, SIZE))
    np.testing.assert_allclose(cls, tokens[:, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(pm, tokens[:, 1:].mean(1).numpy(), atol=1e-5)


def test_embed_empty_input(tiny_random):
    cls, pm = embed_images([], tiny_random)
    assert cls.shape == pm.shape == (0, 384)


def test_random_baseline_is_seeded_and_flagged(tiny_random):
    again = load_encoder("random_vits14", img_size=SIZE)
    assert again.weights_sha256 == tiny_random.weights_sha256
    assert tiny_random.weights_origin is WeightsOrigin.RANDOM_INIT and tiny_random.flags == Flag.RANDOM_WEIGHTS
    with pytest.raises(InputError, match="random baseline"):
        load_encoder("random_vits14", "some.safetensors")
    with pytest.raises(InputError, match="unknown encoder"):
        load_encoder("resnet_galaxy")


def test_dinov2_from_local_file_and_offline_error(tiny_random, offline, tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(OfflineError, match="not available"):
        load_encoder("dinov2_vits14", img_size=SIZE)
    path = tmp_path / "dinov2_vits14.safetensors"
    save_file(tiny_random.model.state_dict(), str(path))
    enc = load_encoder("dinov2_vits14", path, img_size=SIZE)
    assert enc.weights_origin is WeightsOrigin.LOCAL and enc.flags == 0
    imgs = _images(2)
    np.testing.assert_array_equal(embed_images(imgs, enc)[0], embed_images(imgs, tiny_random)[0])


def test_choose_default_encoder(offline, tiny_random, tmp_path):
    choice = choose_default_encoder()
    assert choice.name == "random_vits14" and choice.is_random
    assert "random" in str(choice) and "HF_HUB_OFFLINE" in str(choice)
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file(tiny_random.model.state_dict(), str(path))
    choice = choose_default_encoder(path)
    assert choice.name == "dinov2_vits14" and choice.weights is not None and choice.weights.origin is WeightsOrigin.LOCAL


def test_real_ring_galaxies_embed(shared_dir, tiny_random):
    pngs = sorted((shared_dir / "gz_decals_rings" / "images").glob("*.png"))[:3]
    images = [load_image_file(p) for p in pngs]
    assert images[0].shape == (256, 256, 3) and images[0].dtype == np.uint8
    cls, _ = embed_images(images, tiny_random)
    assert np.isfinite(cls).all()


def test_load_image_file_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_image_file(tmp_path / "nope.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"bad\.png"):
        load_image_file(bad)


# ------------------------------------------------------------------------------------ shard + assets
def test_embed_shard_flags_a_nan_image_without_stopping(warehouse, tiny_random):
    from stages.embeddings import embed_shard, vector_stats

    ids = write_tiny_shard(warehouse, n=4, nan_image=True)
    res = embed_shard(warehouse, "demo-00000", tiny_random, batch_size=3)
    assert res.rows == 4 and res.flagged == 1
    table = warehouse.read(res.table)
    flags = dict(zip(table.column("galaxy_id").to_pylist(), table.column("flags").to_pylist()))
    assert flags[ids[0]] == Flag.IMAGE_NAN | Flag.RANDOM_WEIGHTS
    assert flags[ids[1]] == Flag.RANDOM_WEIGHTS
    stats = vector_stats(warehouse, res.table, "demo-00000")
    assert stats["nan_vectors"] == 0 and stats["unique_ids"] == 4
    assert set(table.column("weights_origin").to_pylist()) == {"random init"}
    embed_shard(warehouse, "demo-00000", tiny_random)
    assert warehouse.count(res.table) == 4  # idempotent upsert


def test_baseline_sample_is_a_fixed_hash_sample_of_the_expected_size():
    ids = [f"g10:{i:06d}" for i in range(20_000)]
    keep = np.array(in_baseline_sample(ids, len(ids), 3000))
    assert abs(keep.sum() - 3000) < 4 * np.sqrt(3000 * (1 - 3000 / 20_000))  # Binomial(n, k/n)
    assert in_baseline_sample(ids[::-1], len(ids), 3000) == keep[::-1].tolist()  # per galaxy, not per order
    smaller = np.array(in_baseline_sample(ids, 40_000, 3000))  # the catalogue grew: a subset of the old sample
    assert smaller.sum() < keep.sum() and not (smaller & ~keep).any()
    assert all(in_baseline_sample(ids[:10], 10, 3000)) and all(in_baseline_sample(ids[:10], 10, 0))


def test_sampled_shard_keeps_its_sample_as_the_catalogue_grows(warehouse, tiny_random):
    from stages.embeddings import embed_shard

    first = write_tiny_shard(warehouse, n=6, shard="demo-00000")
    res = embed_shard(warehouse, "demo-00000", tiny_random, sample=3)  # 3 of 6
    want = [g for g, k in zip(first, in_baseline_sample(first, 6, 3)) if k]
    assert (res.rows, res.shard_galaxies) == (len(want), 6) and sorted(res.galaxy_ids) == sorted(want)
    assert sorted(warehouse.read(res.table).column("galaxy_id").to_pylist()) == sorted(want)
    second = write_tiny_shard(warehouse, n=18, shard="demo-00001")
    embed_shard(warehouse, "demo-00001", tiny_random, sample=3)
    again = embed_shard(warehouse, "demo-00000", tiny_random, sample=3)  # re-embedded at 24 galaxies: fewer
    now = first + second
    sample_now = {g for g, k in zip(now, in_baseline_sample(now, 24, 3)) if k}
    assert set(again.galaxy_ids) == sample_now & set(first) and again.rows < len(want)
    stored = warehouse.read(res.table).column("galaxy_id").to_pylist()
    assert len(stored) == len(set(stored)) and sample_now <= set(stored)  # the sample, and what was stored stays
    assert set(want) <= set(stored)


def _materialize(wh, assets, partition=None):
    import dagster as dg

    from dagster_project.partitions import SHARDS
    from dagster_project.resources import WarehouseResource

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SHARDS.name, ["demo-00000"])
    return dg.materialize(assets, partition_key=partition, instance=instance,
                          resources={"warehouse": WarehouseResource(root=str(wh.root))})


@pytest.mark.slow
def test_embeddings_assets_materialize(warehouse, offline):
    from dagster_project.defs.embeddings.assets import embedding_index, embeddings

    ids = write_tiny_shard(warehouse, n=3)
    for _ in range(2):  # the second run must leave the same rows
        result = _materialize(warehouse, [embeddings], "demo-00000")
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert {c.check_name for c in checks} == {"no_nan", "norms_in_range", "one_vector_per_galaxy"}
        assert all(c.passed for c in checks)
    meta = result.asset_materializations_for_node("embeddings")[0].metadata
    assert meta["table"].value == "embeddings_random_vits14" and meta["random_weights"].value is True
    assert sorted(warehouse.read("embeddings_random_vits14").column("galaxy_id").to_pylist()) == sorted(ids)
    result = _materialize(warehouse, [embedding_index])
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
    summary = result.asset_materializations_for_node("embedding_index")[0].metadata["tables"].value
    assert summary["embeddings_random_vits14"]["search"] == "exact"


def test_definitions_load_with_the_embedding_assets():
    from dagster_project.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"embeddings", "embedding_index"} <= keys
