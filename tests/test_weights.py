"""Weight resolution (user file, env var, weights dir, HF cache, offline error) and timm loading."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
import torch

from features.errors import InputError, OfflineError
from features.weights import (
    WeightsInfo,
    WeightsOrigin,
    WeightsProvenance,
    env_var_name,
    load_timm_model,
    resolve_weights,
)

REPO = "timm/vit_small_patch14_dinov2.lvd142m"
ARCH = "vit_small_patch14_dinov2"
SIZE = 28  # 2 x 2 patches of 14 px: a real DINOv2 ViT-S/14, fast


@pytest.fixture
def no_user_weights(monkeypatch, tmp_path):
    """No env-var weights, an empty HF cache, and the hub marked offline."""
    monkeypatch.delenv(env_var_name(REPO), raising=False)
    monkeypatch.delenv("ASTROVISION_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    """A seeded random DINOv2 ViT-S/14 (img_size 28) saved as safetensors and .pth, and an input."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = load_timm_model(ARCH, None, img_size=SIZE, num_classes=0)
    d = tmp_path_factory.mktemp("weights")
    save_file(model.state_dict(), str(d / "model.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, d / "ckpt.pth")
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(x)
    return d, x, ref


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["model.safetensors", "ckpt.pth"])
def test_local_file_loads_identically(tiny_vit, no_user_weights, name):
    d, x, ref = tiny_vit
    info = resolve_weights(REPO, local_path=d / name)
    assert info == WeightsInfo(d / name, _sha(d / name), "local")
    model = load_timm_model(ARCH, info, img_size=SIZE, num_classes=0)
    with torch.inference_mode():
        assert torch.equal(model(x), ref)


def test_env_var_and_weights_dir(tiny_vit, no_user_weights, monkeypatch, tmp_path):
    d, _, _ = tiny_vit
    monkeypatch.setenv("ASTROVISION_WEIGHTS_DIR", str(d.parent / "nowhere"))
    monkeypatch.setenv(env_var_name(REPO), str(d / "model.safetensors"))
    assert resolve_weights(REPO).path == d / "model.safetensors"
    monkeypatch.delenv(env_var_name(REPO))
    wdir = tmp_path / "wdir"
    wdir.mkdir()
    (wdir / "vit_small_patch14_dinov2.lvd142m.safetensors").write_bytes((d / "model.safetensors").read_bytes())
    monkeypatch.setenv("ASTROVISION_WEIGHTS_DIR", str(wdir))
    info = resolve_weights(REPO)
    assert info.origin is WeightsOrigin.LOCAL and info.sha256 == _sha(d / "model.safetensors")


def test_named_file_that_is_missing_is_an_error_not_a_fallback(no_user_weights, monkeypatch, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        resolve_weights(REPO, local_path=tmp_path / "missing.safetensors")
    monkeypatch.setenv(env_var_name(REPO), str(tmp_path / "gone.pth"))
    with pytest.raises(InputError, match=env_var_name(REPO)):
        resolve_weights(REPO)


def test_hugging_face_cache_is_used(tiny_vit, no_user_weights, tmp_path):
    d, _, _ = tiny_vit
    repo_dir = tmp_path / "hf" / "models--timm--vit_small_patch14_dinov2.lvd142m"
    snap = repo_dir / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("abc123")
    (snap / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes())
    info = resolve_weights(REPO, cache_dir=tmp_path / "hf")
    assert info.origin is WeightsOrigin.CACHE and info.path == snap / "model.safetensors"


def test_offline_without_weights_fails_fast_and_says_how(no_user_weights):
    t0 = time.perf_counter()
    with pytest.raises(OfflineError) as err:
        resolve_weights(REPO)
    assert time.perf_counter() - t0 < 5.0
    msg = str(err.value)
    for part in ("model.safetensors", "HF_HUB_OFFLINE", "--weights", env_var_name(REPO), "ASTROVISION_WEIGHTS_DIR"):
        assert part in msg


def test_unreachable_hub_fails_fast(no_user_weights, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused, no network
    t0 = time.perf_counter()
    with pytest.raises(OfflineError, match="unreachable"):
        resolve_weights(REPO, timeout_s=1.0)
    assert time.perf_counter() - t0 < 5.0


def test_wrong_architecture_names_the_file(tiny_vit):
    d, _, _ = tiny_vit
    info = WeightsInfo(d / "model.safetensors", "x", "local")
    with pytest.raises(InputError, match=r"model\.safetensors"):
        load_timm_model("vit_base_patch14_dinov2", info, img_size=SIZE, num_classes=0)


def test_position_embeddings_resampled_to_new_size(tiny_vit):
    d, _, _ = tiny_vit
    model = load_timm_model(ARCH, WeightsInfo(d / "model.safetensors", "x", "local"), img_size=42, num_classes=0)
    assert model.pos_embed.shape[1] == 1 + 3 * 3


def test_classifier_of_same_size_loads_other_size_stays_random(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    src = load_timm_model(ARCH, None, img_size=SIZE, num_classes=3)
    save_file(src.state_dict(), str(tmp_path / "clf.safetensors"))
    info = WeightsInfo(tmp_path / "clf.safetensors", "x", "local")
    same = load_timm_model(ARCH, info, img_size=SIZE, num_classes=3)
    assert torch.equal(same.head.weight, src.head.weight)
    other = load_timm_model(ARCH, info, img_size=SIZE, num_classes=5)
    assert other.head.weight.shape == (5, 384)
    assert torch.equal(other.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)


def test_weights_origin_values_are_the_stored_text():
    assert [o.value for o in WeightsOrigin] == ["local", "cache", "download", "random init", "scratch",
                                                 "self-supervised"]
    assert WeightsOrigin("random init") is WeightsOrigin.RANDOM_INIT
    assert WeightsOrigin("random") is WeightsOrigin.RANDOM_INIT  # embeddings written before the type existed
    assert [o for o in WeightsOrigin if o.is_random] == [WeightsOrigin.RANDOM_INIT]  # scratch is not a fallback
    with pytest.raises(ValueError, match="'random-ish'"):
        WeightsOrigin("random-ish")  # no substring matching: an unknown value is an error


def test_weights_provenance_text():
    sha = "0123456789abcdef" * 4
    assert str(WeightsProvenance(WeightsOrigin.LOCAL, sha)) == "local sha256:0123456789abcdef"
    assert str(WeightsProvenance(WeightsOrigin.SCRATCH)) == "scratch"
    probe = WeightsProvenance(WeightsOrigin.RANDOM_INIT, None, "embeddings embeddings_random_vits14: random init")
    assert probe.is_random and str(probe) == "random init (embeddings embeddings_random_vits14: random init)"
    assert not WeightsProvenance(WeightsOrigin.CACHE, sha).is_random


def test_origin_of_a_stored_provenance_text():
    from features.weights import WeightsOrigin, WeightsProvenance

    for origin in WeightsOrigin:
        text = str(WeightsProvenance(origin, sha256="ab" * 32, via="embeddings x: cache"))
        assert WeightsOrigin.of_record(text) is origin
    assert WeightsOrigin.of_record("random init") is WeightsOrigin.RANDOM_INIT
    with pytest.raises(ValueError):
        WeightsOrigin.of_record("randomised")
