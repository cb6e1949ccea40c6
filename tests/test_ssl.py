"""Self-supervised encoder: views, loss, the resumable loop, the stage's files, the asset and its table."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from toy_warehouse import write_image_shard

from features.embeddings import EncoderSpec, in_baseline_sample, load_encoder
from features.errors import InputError, OfflineError
from features.ssl import SSLConfig, ViewConfig, galaxy_views, gaussian_blur, nt_xent
from features.weights import WeightsOrigin, sha256_file
from models.errors import MissingInputError
from models.ssl import train_simclr
from warehouse import Warehouse, WarehouseError

ROOT = Path(__file__).resolve().parent.parent
TINY = SSLConfig(epochs=2, batch_size=4, hidden_dim=16, proj_dim=8)


def _discs(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """``uint8 [n, size, size, 3]`` coloured elliptical blobs on a dark sky."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        q, pa_, r = rng.uniform(0.3, 1), rng.uniform(0, np.pi), rng.uniform(3, size / 3)
        u = xx * np.cos(pa_) + yy * np.sin(pa_)
        v = -xx * np.sin(pa_) + yy * np.cos(pa_)
        prof = np.exp(-np.hypot(u, v / q) / r * 2)
        colour = rng.uniform(0.3, 1.0, 3)
        out[i] = np.clip(prof[..., None] * colour * 255 + rng.normal(0, 3, (size, size, 3)), 0, 255)
    return out


def write_shard(wh: Warehouse, n: int = 8, shard: str = "demo-00000", size: int = 32) -> list[str]:
    """``galaxies`` and ``images`` rows of one shard of blob galaxies."""
    return write_image_shard(wh, [f"demo:{i:06d}" for i in range(n)], list(_discs(n, size)), shard)


# ------------------------------------------------------------------------------------------ views, loss
def test_views_keep_colour_range_and_are_seeded():
    x = torch.from_numpy(_discs(6)).permute(0, 3, 1, 2).float() / 255
    cfg = ViewConfig(noise_sigma=(0.0, 0.0), flux_scale=(1.0, 1.0), band_scale=0.0)
    a = galaxy_views(x, torch.Generator().manual_seed(1), cfg)
    b = galaxy_views(x, torch.Generator().manual_seed(1), cfg)
    c = galaxy_views(x, torch.Generator().manual_seed(2), cfg)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    # geometry and blur act on every channel alike: the colour (ratio of channel fluxes) is unchanged
    before = x.sum(dim=(2, 3)) / x.sum(dim=(1, 2, 3))[:, None]
    after = a.sum(dim=(2, 3)) / a.sum(dim=(1, 2, 3))[:, None]
    assert torch.allclose(before, after, atol=0.02)
    assert galaxy_views(x[:0], torch.Generator()).shape[0] == 0


def test_gaussian_blur_keeps_flux_and_sigma_zero_is_identity():
    x = torch.zeros(2, 3, 21, 21)
    x[:, :, 10, 10] = 1.0
    y = gaussian_blur(x, torch.tensor([0.0, 2.0]))
    assert torch.allclose(y[0], x[0], atol=1e-6)
    assert torch.allclose(y[1].sum(dim=(1, 2)), torch.ones(3), atol=1e-5)
    # second moment of the blurred delta is sigma^2 along each axis
    grid = torch.arange(21.0) - 10
    var = float((y[1, 0].sum(dim=0) * grid**2).sum())
    assert var == pytest.approx(4.0, rel=0.02)


def test_nt_xent_collapse_and_alignment():
    z = torch.ones(4, 8)
    assert float(nt_xent(z, z)) == pytest.approx(math.log(7), rel=1e-6)  # log(2N - 1)
    e = torch.eye(4, 8) * 10
    assert float(nt_xent(e, e, temperature=0.1)) < 1e-3  # positives aligned, negatives orthogonal
    with pytest.raises(ValueError, match="N >= 2"):
        nt_xent(torch.ones(1, 8), torch.ones(1, 8))


# ------------------------------------------------------------------------------------------ the loop
def _tiny_backbone(seed: int = 0):
    import timm

    torch.manual_seed(seed)
    return timm.create_model("resnet18", num_classes=0, channels=(8, 16, 16, 16), stem_width=8)


def _state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_train_resumes_after_an_interruption_to_the_same_weights(tmp_path):
    x = torch.from_numpy(_discs(8)).permute(0, 3, 1, 2).float() / 255
    straight = _tiny_backbone()
    full = train_simclr(x, straight, TINY, log=lambda _m: None)
    assert len(full.losses) == 2 and all(np.isfinite(full.losses))

    def stop_after_first(msg: str) -> None:
        if msg.startswith("ssl epoch 1/"):
            raise KeyboardInterrupt

    ckpt = tmp_path / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        train_simclr(x, _tiny_backbone(), TINY, checkpoint=ckpt, data_key="set A", log=stop_after_first)
    resumed_model = _tiny_backbone()
    resumed = train_simclr(x, resumed_model, TINY, checkpoint=ckpt, data_key="set A", log=lambda _m: None)
    assert resumed.resumed_from == 1 and resumed.losses == pytest.approx(full.losses, rel=1e-5)
    for k, v in _state(straight).items():
        assert torch.allclose(v.float(), resumed_model.state_dict()[k].float(), atol=1e-5), k
    # a checkpoint of another training set is not resumed
    other = train_simclr(x, _tiny_backbone(), TINY, checkpoint=ckpt, data_key="set B", log=lambda _m: None)
    assert other.resumed_from == 0 and "started over" in other.notes[0]
    with pytest.raises(ValueError, match="at least 2 images"):
        train_simclr(x[:1], _tiny_backbone(), TINY)


# ------------------------------------------------------------------------------------------ the stage
def test_stage_writes_weights_with_record_and_reuses_them(warehouse):
    from stages.ssl import read_record, ssl_dir, ssl_weights, train_ssl_encoder

    with pytest.raises(MissingInputError, match="ingest a source"):
        train_ssl_encoder(warehouse, config=TINY, log=lambda _m: None)
    with pytest.raises(MissingInputError, match="materialize the ssl_encoder"):
        ssl_weights(warehouse, "ssl_resnet18")
    write_shard(warehouse, n=8)
    out = train_ssl_encoder(warehouse, config=TINY, log=lambda _m: None)
    record = read_record(warehouse, "ssl_resnet18")
    weights = ssl_dir(warehouse, "ssl_resnet18") / "weights.safetensors"
    assert record["weights_sha256"] == sha256_file(weights) == out.weights_sha256
    assert record["table_versions"] == {"galaxies": warehouse.dataset("galaxies").version,
                                        "images": warehouse.dataset("images").version}
    assert record["n_images"] == 8 and record["init"].startswith("scratch") and len(record["losses"]) == 2
    assert record["stamp"] == "galaxy"  # trained on galaxy-centred stamps, as it embeds
    assert not (ssl_dir(warehouse, "ssl_resnet18") / "checkpoint.pt").exists()
    again = train_ssl_encoder(warehouse, config=TINY, log=lambda _m: None)
    assert again.reused and again.weights_sha256 == out.weights_sha256
    enc = load_encoder("ssl_resnet18", weights)
    assert enc.weights_origin is WeightsOrigin.SELF_SUPERVISED and enc.flags == 0 and enc.dim == 256
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)  # changed after training
    with pytest.raises(InputError, match="its record says"):
        ssl_weights(warehouse, "ssl_resnet18")
    with pytest.raises(InputError, match="materialize it first"):
        load_encoder("ssl_resnet18")
    with pytest.raises(InputError, match="not an encoder trained in the warehouse"):
        train_ssl_encoder(warehouse, "random_vits14", config=TINY)


def test_continued_pretraining_when_start_weights_resolve(monkeypatch, offline, tmp_path):
    import timm
    from safetensors.torch import save_file

    from stages.ssl import new_backbone

    spec = EncoderSpec("ssl_tiny", "resnet18", None, 16, img_size=32, trained_here=True,
                       init_repo="test/resnet18_tiny", timm_kwargs=(("channels", (8, 16, 16, 16)), ("stem_width", 8)))
    model, start = new_backbone(spec, "auto")
    assert start.startswith("scratch (test/resnet18_tiny weights not available")
    with pytest.raises(OfflineError):
        new_backbone(spec, "pretrained")
    torch.manual_seed(123)
    ref = timm.create_model("resnet18", num_classes=0, channels=(8, 16, 16, 16), stem_width=8)
    (tmp_path / "w").mkdir()
    save_file(ref.state_dict(), str(tmp_path / "w" / "resnet18_tiny.safetensors"))
    monkeypatch.setenv("ASTROVISION_WEIGHTS_DIR", str(tmp_path / "w"))
    model, start = new_backbone(spec, "auto")
    assert start.startswith("continued from test/resnet18_tiny (local, sha256")
    assert torch.equal(model.conv1.weight, ref.conv1.weight)
    _, start = new_backbone(spec, "scratch")
    assert start == "scratch"
    with pytest.raises(InputError, match="unknown init"):
        new_backbone(spec, "imagenet")


_TRAIN_SCRIPT = """
import sys, time
sys.path.insert(0, sys.argv[1])
from features.ssl import SSLConfig
from stages.ssl import train_ssl_encoder
from warehouse import Warehouse

def log(msg):
    print(msg, flush=True)
    if msg.startswith("ssl epoch 2/"):
        time.sleep(120)  # the test kills the process here, after epoch 2's checkpoint

train_ssl_encoder(Warehouse.open(sys.argv[2]), config=SSLConfig(epochs=4, batch_size=4, hidden_dim=16, proj_dim=8),
                  log=log)
print("done", flush=True)
"""


def test_killed_training_resumes_and_a_second_trainer_is_refused(tmp_path):
    from stages.ssl import read_record, ssl_dir, train_ssl_encoder

    wh = Warehouse.open(tmp_path / "wh")
    write_shard(wh, n=8)
    script = tmp_path / "train.py"
    script.write_text(_TRAIN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(ROOT), str(wh.root)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("ssl epoch 2/"):
                break
        assert any(ln.startswith("ssl epoch 2/") for ln in lines), "".join(lines)
        with pytest.raises(WarehouseError, match="another process is training"):
            train_ssl_encoder(wh, config=SSLConfig(epochs=4, batch_size=4, hidden_dim=16, proj_dim=8))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    out = ssl_dir(wh, "ssl_resnet18")
    assert (out / "checkpoint.pt").is_file() and not (out / "weights.safetensors").exists()
    assert read_record(wh, "ssl_resnet18") is None
    logs: list[str] = []
    done = train_ssl_encoder(wh, config=SSLConfig(epochs=4, batch_size=4, hidden_dim=16, proj_dim=8), log=logs.append)
    assert done.resumed_from == 2 and len(done.losses) == 4
    assert logs[1].startswith(f"ssl: resuming after epoch {done.resumed_from}")
    assert json.loads((out / "encoder.json").read_text())["resumed_from"] == done.resumed_from


# ------------------------------------------------------------------------------------------ asset and table
def test_ssl_encoder_asset_feeds_its_own_embeddings_table_and_search(warehouse, offline):
    from dagster_project.runner import run_pipeline
    from stages.embeddings import embed_query_image
    from stages.training import resolve_encoder
    from warehouse import search

    ids = write_shard(warehouse, n=8)
    run_config = {"ops": {"ssl_encoder": {"config": {"epochs": 1, "batch_size": 4}},
                          "embeddings": {"config": {"baseline_sample": 4}}}}
    report = run_pipeline(warehouse, ["demo-00000"], groups=["embeddings"], assets=["ssl_encoder", "embeddings"],
                          run_config=run_config, progress=False, log=lambda _m: None)
    assert report.ok, report.failed
    assert report.succeeded == ["ssl_encoder", "embeddings[demo-00000]"]  # trained first, then embedded
    meta = report.metadata["embeddings[demo-00000]"]
    assert meta["table"] == "embeddings_ssl_resnet18" and set(meta["tables"]) == {
        "embeddings_ssl_resnet18", "embeddings_random_vits14"}
    # the baseline beside it embeds its hash sample of about 4 of the 8 galaxies, and says so
    sampled = [g for g, k in zip(ids, in_baseline_sample(ids, 8, 4)) if k]
    assert 0 < len(sampled) < 8
    assert sorted(warehouse.read("embeddings_random_vits14").column("galaxy_id").to_pylist()) == sorted(sampled)
    base = meta["tables"]["embeddings_random_vits14"]
    assert (base["rows"], base["shard_galaxies"], base["sample"], base["missing"], base["extra"]) == (
        len(sampled), 8, 4, 0, 0)
    assert "hash sample of about 4 of the 8 galaxies" in base["note"]
    assert meta["tables"]["embeddings_ssl_resnet18"]["rows"] == 8
    rows = warehouse.read("embeddings_ssl_resnet18").to_pydict()
    assert sorted(rows["galaxy_id"]) == sorted(ids)
    assert set(rows["weights_origin"]) == {"self-supervised"} and set(rows["flags"]) == {0}
    assert set(rows["weights_sha256"]) == {report.metadata["ssl_encoder"]["weights_sha256"]}
    assert search.pick_table(warehouse) == "embeddings_ssl_resnet18"
    assert resolve_encoder(warehouse, "auto") == "ssl_resnet18"
    assert resolve_encoder(warehouse, "auto", backbone=True) == "ssl_resnet18"  # the fine-tune: the encoder in use
    hits = search.similar(warehouse, ids[0], k=3, encoder="ssl_resnet18", exclude_query=True)
    assert len(hits) == 3 and ids[0] not in hits["galaxy_id"].to_list()
    vec, name = embed_query_image(warehouse, warehouse.read_image(ids[0]), "ssl_resnet18")
    assert name == "ssl_resnet18"
    stored = np.asarray(rows["vector"][rows["galaxy_id"].index(ids[0])], dtype=np.float32)
    assert np.allclose(vec, stored, atol=1e-4)


def test_embed_cli_trains_then_embeds_with_ssl_resnet18(warehouse, offline, capsys):
    from service.cli import main

    ids = write_shard(warehouse, n=6)
    assert main(["--home", str(warehouse.root), "embed", "--encoder", "ssl_resnet18", "--quiet", "--no-download"]) == 0
    out = capsys.readouterr().out
    assert "self-supervised on this warehouse's images" in out and "6 galaxies embedded with ssl_resnet18" in out
    assert sorted(warehouse.read("embeddings_ssl_resnet18").column("galaxy_id").to_pylist()) == sorted(ids)
    assert not warehouse.exists("embeddings_random_vits14")  # a named encoder is the only one computed


def test_runner_phases_put_ssl_encoder_between_the_shards_and_their_embeddings():
    from dagster_project.definitions import defs
    from dagster_project.plan import asset_graph, plan_runs

    graph = asset_graph(defs)
    runs = plan_runs(graph, ["s0"])
    phases = [(run.partition is not None, set(run.assets)) for run in runs]
    where = {name: i for i, (_p, names) in enumerate(phases) for name in names}
    assert phases[0][0] and {"galaxies", "morphometrics", "photometry"} <= phases[0][1]
    assert where["galaxies"] < where["ssl_encoder"] < where["embeddings"] < where["dinov2_probe"]
    assert where["embeddings"] < where["embedding_maps"] and phases[where["embeddings"]][0]
    only_shards = plan_runs({k: graph[k] for k in ("galaxies", "embeddings")}, ["s0"])
    assert len(only_shards) == 1 and only_shards[0].partition == "s0"  # an unselected ssl_encoder orders nothing


# ------------------------------------------------------------------------------------------ galaxy stamps
def _small_galaxy_frame(size: int = 200, cy: int = 90, cx: int = 115, r: float = 6.0) -> np.ndarray:
    """``uint8 (size, size, 3)``: a faint noisy sky with one small exponential disc off the centre."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    prof = np.exp(-np.hypot(yy - cy, xx - cx) / r)
    img = 10 + prof[..., None] * np.array([220.0, 160.0, 90.0]) + rng.normal(0, 2, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_galaxy_stamp_is_centred_and_scaled_on_the_galaxy():
    from features.ssl.stamps import EXTENT, galaxy_stamps, stamp_geometry

    frame = _small_galaxy_frame()
    geo = stamp_geometry(frame.astype(np.float32) / 255)
    assert geo.found and abs(geo.cy - 90) < 2 and abs(geo.cx - 115) < 2
    assert 10 < geo.half < 60  # scaled on the ~6 px disc, not the 200 px frame
    bigger = stamp_geometry(_small_galaxy_frame(r=12.0).astype(np.float32) / 255)
    assert bigger.half > 1.5 * geo.half  # the stamp grows with the galaxy
    wide = stamp_geometry(_small_galaxy_frame(r=12.0).astype(np.float32) / 255, extent=2.0)
    assert (wide.cy, wide.cx) == (bigger.cy, bigger.cx) and wide.half == pytest.approx(bigger.half * 2.0 / EXTENT)
    stamps, geometry = galaxy_stamps([frame], 32)
    assert stamps.shape == (1, 32, 32, 3) and stamps.dtype == np.uint8 and geometry == [geo]
    lum = stamps[0].astype(float).mean(axis=2)
    peak = np.unravel_index(lum.argmax(), lum.shape)
    assert abs(peak[0] - 15.5) <= 2 and abs(peak[1] - 15.5) <= 2  # the galaxy is in the middle
    # the galaxy covers a larger share of the stamp than of the frame, by the ratio of their areas
    whole = frame.astype(float).mean(axis=2)
    assert (lum > 60).mean() > 0.5 * (100 / geo.half) ** 2 * (whole > 60).mean()


def test_galaxy_stamps_cut_on_threads_equal_the_serial_ones():
    from features.ssl.stamps import galaxy_stamps

    frames = [_small_galaxy_frame(cy=80 + 7 * i, cx=120 - 5 * i, r=4.0 + i) for i in range(7)]
    frames[3] = np.zeros_like(frames[3])  # a blank frame among them, kept whole
    serial, geo = galaxy_stamps(frames, 24)
    threaded, geo_t = galaxy_stamps(frames, 24, threads=3)
    assert np.array_equal(serial, threaded) and geo == geo_t
    assert not geo[3].found and all(g.found for i, g in enumerate(geo) if i != 3)


def test_blank_or_sky_only_frame_is_kept_whole():
    from features.ssl.stamps import galaxy_stamps, stamp_geometry

    blank = np.zeros((40, 40, 3), np.float32)
    geo = stamp_geometry(blank)
    assert not geo.found and geo.half == 20 and (geo.cy, geo.cx) == (19.5, 19.5)
    corner = np.zeros((60, 60, 3), np.uint8)
    corner[:4, :4] = 255  # a bright corner, nothing near the centre
    assert not stamp_geometry(corner.astype(np.float32) / 255).found
    stamps, _ = galaxy_stamps([np.full((16, 16, 3), np.nan, np.float32)], 8)
    assert stamps.shape == (1, 8, 8, 3) and stamps.max() == 0  # non-finite pixels are sky


def test_galaxy_stamp_encoder_embeds_what_it_was_trained_on():
    from features.embeddings import ENCODERS, Encoder, embed_images
    from features.ssl.stamps import galaxy_stamps
    from models.ssl import to_stamps

    spec = ENCODERS["ssl_resnet18"]
    assert spec.stamp == "galaxy"
    frames = [_small_galaxy_frame(), _small_galaxy_frame(cy=120, cx=80, r=9.0)]
    cut, _ = galaxy_stamps(frames, 32)
    assert torch.allclose(to_stamps(frames, 32, "galaxy"), torch.from_numpy(cut).permute(0, 3, 1, 2).float() / 255,
                          atol=1e-6)
    from stages.ssl import new_backbone

    enc = Encoder(spec, new_backbone(spec, "scratch")[0], "", WeightsOrigin.SELF_SUPERVISED, 32)
    from_frames, _ = embed_images(frames, enc)
    from_stamps, _ = embed_images(cut, Encoder(dataclasses.replace(spec, stamp="frame"), enc.model, "",
                                               WeightsOrigin.SELF_SUPERVISED, 32))
    assert np.allclose(from_frames, from_stamps, atol=1e-5)
    with pytest.raises(ValueError, match="unknown stamp kind"):
        to_stamps(frames, 32, "petrosian")


def test_flux_views_perturb_colour_a_little_and_are_seeded():
    x = torch.from_numpy(_discs(16)).permute(0, 3, 1, 2).float() / 255 * 0.5
    cfg = ViewConfig(noise_sigma=(0.0, 0.0), blur_sigma=(0.0, 0.0), flux_scale=(0.7, 1.4), band_scale=0.1)
    a = galaxy_views(x, torch.Generator().manual_seed(3), cfg)
    assert torch.equal(a, galaxy_views(x, torch.Generator().manual_seed(3), cfg))
    ratio = lambda t: t.sum(dim=(2, 3)) / t.sum(dim=(1, 2, 3))[:, None]  # noqa: E731
    change = (ratio(a) - ratio(x)).abs()
    assert 0.002 < float(change.mean()) < 0.1  # colour moved, but by a few percent
    # switched off, colour is kept (to resampling error) and moves much less
    off = galaxy_views(x, torch.Generator().manual_seed(3), dataclasses.replace(cfg, flux_scale=(1.0, 1.0),
                                                                                band_scale=0.0))
    assert float((ratio(off) - ratio(x)).abs().mean()) < 0.5 * float(change.mean())


def test_real_benchmark_metrics_on_known_cases():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_ssl", ROOT / "benchmarks" / "bench_ssl.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    labels = np.array([0] * 12 + [1] * 12 + [2] * 6)
    separated = np.eye(3)[labels] + 0.01 * np.random.default_rng(0).normal(size=(30, 3))
    per = bench.per_query_precision(separated, labels, k=5)
    assert per.shape == (30,) and np.allclose(per, 1.0)  # every neighbour shares the label
    mixed = bench.per_query_precision(np.ones((30, 3)) + 0.01 * np.random.default_rng(1).normal(size=(30, 3)),
                                      labels, k=29)  # k = all others: the class's share among the others
    assert np.allclose(mixed[labels == 0], 11 / 29) and np.allclose(mixed[labels == 2], 5 / 29)
    assert bench.class_mean(mixed, labels) == pytest.approx((11 / 29 + 11 / 29 + 5 / 29) / 3)
    boots = bench.stratified_boot(labels, 50, seed=0)
    assert all(np.array_equal(np.bincount(labels[b]), np.bincount(labels)) for b in boots)  # class sizes kept
    central = bench._central([np.arange(423 * 423 * 3).reshape(423, 423, 3)])[0]
    assert central.shape == (141, 141, 3) and central[70, 70, 0] == np.arange(423 * 423 * 3).reshape(423, 423, 3)[211, 211, 0]


def _bench_ssl():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_ssl", ROOT / "benchmarks" / "bench_ssl.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    return bench


def test_real_benchmark_embeds_its_stamps_as_the_product_embeds_the_frames():
    """The benchmark's stamps are cut already: embedding them must not cut them again (it did: a tighter
    crop than the one trained on and stored, so its table was not the product's encoder)."""
    from features.embeddings import ENCODERS, Encoder, embed_images
    from features.ssl.stamps import galaxy_stamps
    from stages.ssl import new_backbone

    bench = _bench_ssl()
    spec = ENCODERS["ssl_resnet18"]
    net = new_backbone(spec, "scratch")[0]
    frames = [_small_galaxy_frame(), _small_galaxy_frame(cy=120, cx=80, r=9.0), _small_galaxy_frame(r=4.0)]
    stamps, _ = galaxy_stamps(frames, 32)
    product, _ = embed_images(frames, Encoder(spec, net, "", WeightsOrigin.SELF_SUPERVISED, 32))
    assert np.allclose(bench._embed_stamps(stamps, net, 32), product, atol=1e-5)
    last, every = bench.stage_pool(stamps, net, 32)  # the levers' own pass gives the same last stage
    assert np.allclose(last, product, atol=1e-5) and every.shape == (3, 32 + 64 + 128 + 256)


def test_real_benchmark_levers_and_saved_encoder(tmp_path):
    """The dihedral mean is invariant to turning or flipping the input; a saved encoder loads back only
    under the options it was pretrained with."""
    from features.embeddings import ENCODERS
    from stages.ssl import new_backbone

    bench = _bench_ssl()
    net = new_backbone(ENCODERS["ssl_resnet18"], "scratch")[0]
    stamps = _discs(4)
    levers = bench.cnn_levers(stamps, net, 32, ["d8", "stages", "d8+stages"])
    turned = bench.cnn_levers(np.stack([bench.dihedral(s, 1, True) for s in stamps]), net, 32, ["d8", "d8+stages"])
    for name in ("D8 mean", "D8 mean of all stages"):
        assert np.allclose(levers[name], turned[name], atol=1e-4)
    assert not np.allclose(levers["all stages"], bench.cnn_levers(
        np.stack([bench.dihedral(s, 1, True) for s in stamps]), net, 32, ["stages"])["all stages"], atol=1e-4)
    cfg = SSLConfig(epochs=1)
    bench._save_encoder(tmp_path / "enc.safetensors", net, cfg, 32, {"losses": [1.0]}, 1.6)
    loaded, train = bench._load_encoder(tmp_path / "enc.safetensors", cfg, 32, 1.6)
    assert train == {"losses": [1.0]} and np.allclose(bench._embed_stamps(stamps, loaded, 32),
                                                      bench._embed_stamps(stamps, net, 32))
    with pytest.raises(SystemExit, match="other options"):
        bench._load_encoder(tmp_path / "enc.safetensors", SSLConfig(epochs=2), 32, 1.6)
    with pytest.raises(SystemExit, match=r"extent 1\.6"):
        bench._load_encoder(tmp_path / "enc.safetensors", cfg, 32, 1.0)
    # --versus of another size is refused before any image is read or anything pretrained
    args = argparse.Namespace(size=64, versus=[str(tmp_path / "enc.safetensors")], rings="/nonexistent",
                              gz1="/nonexistent")
    with pytest.raises(SystemExit, match="pretrained at 32 px, this run is at 64"):
        bench.part_real(args)


def test_stage_trains_on_its_budget_and_records_what_it_left_out(warehouse):
    """``max_images`` caps the galaxies SimCLR trains on (a seeded sample), so the cost stops growing with N."""
    from stages.ssl import MAX_IMAGES, budget_sample, read_record, train_ssl_encoder

    ids = write_shard(warehouse, n=8)
    assert budget_sample(ids, 0, 0) == ids == budget_sample(ids, 8, 0)
    sample = budget_sample(ids, 5, 3)
    assert sample == budget_sample(ids, 5, 3) and len(sample) == 5 and sample == sorted(sample)
    assert set(sample) < set(ids) and sample != budget_sample(ids, 5, 4)
    logs: list[str] = []
    out = train_ssl_encoder(warehouse, config=TINY, max_images=4, log=logs.append)
    record = read_record(warehouse, "ssl_resnet18")
    assert (out.n_images, out.n_trained, out.max_images) == (8, 4, 4)
    assert (record["n_images"], record["n_trained"], record["max_images"]) == (8, 4, 4)
    assert "budget: 4 of 8 galaxies" in record["notes"][-1] and "8 images seen in 2 epochs" in record["notes"][-1]
    assert any("training ssl_resnet18 on 4 galaxies" in m and "budget: 4 of 8" in m for m in logs)
    assert train_ssl_encoder(warehouse, config=TINY, max_images=4, log=lambda _m: None).reused
    from service.commands.demo import _ssl_note

    assert "on 4 of this warehouse's 8 galaxies (budget max_images 4)" in _ssl_note(warehouse, "ssl_resnet18")
    full = train_ssl_encoder(warehouse, config=TINY, max_images=0, log=lambda _m: None)  # another budget retrains
    assert not full.reused and (full.n_trained, full.max_images) == (8, 0)
    assert full.weights_sha256 != out.weights_sha256
    with pytest.raises(InputError, match="max_images must be a whole number >= 0"):
        train_ssl_encoder(warehouse, config=TINY, max_images=-1)
    assert MAX_IMAGES == 2048  # the demo (600 galaxies) trains on every galaxy, as before the budget
