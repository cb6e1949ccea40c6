"""Segmentation: Otsu pseudo-labels, paired augmentation, the U-Net, mask features, the Dagster stage."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from features.flags import Flag
from features.segmentation import (
    BULGE,
    DISK,
    dice,
    iou,
    keep_central,
    mask_shape,
    otsu_pseudo_label,
    overlay_outline,
)
from models.paired_augment import PairedAugment
from models.segfit import SegFitConfig, fit_segmenter, predict_labels
from models.unet import build_unet


def _disk_scene(seed: int = 0, size: int = 96) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sky noise (sigma 1) + a flat disk of level 20 (radius 20) + a core of level 60 (radius 6)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - (size - 1) / 2, xx - (size - 1) / 2)
    disk, core = r <= 20, r <= 6
    image = 5.0 + rng.normal(0, 1.0, (size, size)) + 20.0 * disk + 40.0 * core
    return image, disk, core


def test_otsu_blank_plane_is_flagged_and_empty():
    out = otsu_pseudo_label(np.full((64, 64), 7.0))
    assert out.flags & Flag.IMAGE_BLANK and not out.ok
    assert out.labels.shape == (64, 64) and out.labels.max() == 0
    assert all(math.isnan(t) for t in out.thresholds)


def test_otsu_pure_noise_has_no_bimodality_and_is_flagged():
    noise = np.random.default_rng(1).normal(10.0, 1.0, (64, 64))
    out = otsu_pseudo_label(noise)
    assert out.flags & (Flag.SEG_OTSU_FAILED | Flag.SEG_NO_CENTRAL_SOURCE) and not out.ok
    assert out.labels.max() == 0


def test_otsu_two_level_scene_finds_the_levels():
    image, disk, core = _disk_scene()
    out = otsu_pseudo_label(image, options=None)
    low, high = out.thresholds
    assert out.ok, Flag(out.flags)
    assert 3.0 < low < 20.0 and 20.0 < high < 60.0  # between sky (0), disk (20) and core (60) after the sky step
    assert iou(out.labels > 0, disk) > 0.9
    assert iou(out.labels == BULGE, core) > 0.6
    assert np.all(out.labels[~disk & (np.hypot(*np.mgrid[-47.5:48.5, -47.5:48.5]) > 24)] == 0)


def test_otsu_keeps_only_the_central_galaxy():
    image, _, _ = _disk_scene(size=128)
    image[5:15, 5:15] += 80.0  # a bright neighbour in the corner
    out = otsu_pseudo_label(image)
    assert out.ok and out.labels[5:15, 5:15].max() == 0 and out.labels[64, 64] > 0


def test_iou_and_dice_known_values():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:, :5] = True
    b[:, 2:7] = True  # overlap 30, union 70
    assert iou(a, b) == pytest.approx(30 / 70) and dice(a, b) == pytest.approx(60 / 100)
    assert iou(a, a) == 1.0 and iou(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert dice(a, ~a) == 0.0
    with pytest.raises(ValueError, match="shape"):
        iou(a, b[:5])


def test_mask_shape_of_an_ellipse():
    yy, xx = np.mgrid[:101, :101]
    ellipse = ((xx - 60) / 30.0) ** 2 + ((yy - 40) / 15.0) ** 2 <= 1
    lab = ellipse.astype(np.uint8)
    lab[(xx - 60) ** 2 + (yy - 40) ** 2 <= 25] = 2
    s = mask_shape(lab, 0.262)
    assert s.centroid_x_px == pytest.approx(60, abs=0.01) and s.centroid_y_px == pytest.approx(40, abs=0.01)
    assert s.ellipticity == pytest.approx(0.5, abs=0.02)  # b / a = 15 / 30
    assert s.area_px == ellipse.sum() and s.area_arcsec2 == pytest.approx(s.area_px * 0.262**2)
    assert s.bulge_fraction == pytest.approx((lab == 2).sum() / ellipse.sum())
    empty = mask_shape(np.zeros((8, 8), np.uint8), 0.262)
    assert empty.area_px == 0 and math.isnan(empty.ellipticity) and math.isnan(empty.centroid_x_px)


def test_keep_central_drops_other_regions():
    lab = np.zeros((32, 32), np.uint8)
    lab[12:20, 12:20] = DISK
    lab[0:4, 0:4] = DISK
    out = keep_central(lab)
    assert out[0:4, 0:4].max() == 0 and out[16, 16] == DISK


def _asymmetric_batch(n: int = 6, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks shaped like an 'L' (no flip or rotation maps it onto itself), images made of the mask."""
    masks = torch.zeros((n, size, size), dtype=torch.uint8)
    for i in range(n):
        masks[i, 4 + i: 26, 6:11] = 1
        masks[i, 21:26, 6:24 - i] = 2
    images = torch.stack([masks.float() / 2.0, torch.rand((n, size, size)), masks.float()], dim=1)
    return images, masks


def test_paired_augmentation_keeps_image_and_mask_aligned():
    images, masks = _asymmetric_batch()
    exact = PairedAugment(image_mode="nearest-exact")
    changed = 0
    for seed in range(8):
        x, y = exact(images, masks, torch.Generator().manual_seed(seed))
        assert x.shape == images.shape and y.shape == masks.shape and y.dtype == masks.dtype
        assert torch.equal((x[:, 2]).round().to(torch.uint8), y)  # the mask channel moved with the mask
        changed += int(not torch.equal(y, masks))
    assert changed >= 6  # the augmentation did change the pairs
    x, y = PairedAugment()(images, masks, torch.Generator().manual_seed(3))  # bilinear image
    agree = ((x[:, 2] > 0.5) == (y > 0)).float().mean()
    assert agree > 0.97, agree


def test_paired_augmentation_refuses_mismatched_pairs():
    images, masks = _asymmetric_batch()
    with pytest.raises(ValueError, match="same"):
        PairedAugment()(images, masks[:, :16])


def test_unet_forward_shapes_and_refuses_bad_sizes():
    model = build_unet(3, base=4, depth=2)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="divisible"):
        model(torch.zeros(1, 3, 30, 30))


def _toy_pairs(n: int = 16, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    images, masks = _asymmetric_batch(n, size)
    return (images * 255).clamp(0, 255).to(torch.uint8), masks


def test_unet_two_step_fit_is_seeded():
    data = _toy_pairs()
    cfg = SegFitConfig(size=32, epochs=1, batch_size=8, base=4, depth=2, max_steps=2)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_unet(3, base=4, depth=2)
        res = fit_segmenter(model, data, data, cfg, seed=5)
        runs.append((res, next(model.parameters()).detach().clone()))
    assert runs[0][0].steps == 2 and torch.equal(runs[0][1], runs[1][1])
    assert runs[0][0].history[0]["train_loss"] == runs[1][0].history[0]["train_loss"]
    pred = predict_labels(model, data[0][:3], (64, 64))
    assert pred.shape == (3, 64, 64) and pred.dtype == np.uint8 and pred.max() <= 2


def test_overlay_outline_draws_on_the_border_only():
    img = np.zeros((16, 16, 3), np.uint8)
    lab = np.zeros((16, 16), np.uint8)
    lab[4:12, 4:12] = 1
    out = overlay_outline(img, lab)
    assert tuple(out[4, 8]) == (0, 255, 0) and tuple(out[8, 8]) == (0, 0, 0)
    with pytest.raises(ValueError, match="match"):
        overlay_outline(img, lab[:8])


def test_beats_otsu_check_fails_when_unet_is_worse():
    from dagster_project.defs.segmentation.checks import beats_otsu_check
    from stages.segmentation import score_against_truth

    truth = [np.pad(np.ones((8, 8), bool), 4)] * 4
    otsu = [t.astype(np.uint8) for t in truth]  # Otsu exact
    worse = [np.pad(np.ones((4, 4), np.uint8), 6)] * 4  # U-Net a quarter of it
    scores = score_against_truth(worse, otsu, truth, ["a", "a", "b", "b"])
    assert scores["overall"]["unet_iou"] == pytest.approx(0.25) and scores["overall"]["otsu_iou"] == 1.0
    assert scores["per_class"]["b"]["n"] == 2 and scores["iou_difference"]["mean"] == pytest.approx(-0.75)
    gate = {"rule": "r", "reason": "x", "passed": scores["overall"]["unet_iou"] > scores["overall"]["otsu_iou"],
            **scores}
    check = beats_otsu_check(gate)
    assert check.passed is False and check.severity.value == "ERROR"


@pytest.fixture(scope="module")
def demo_segmented(tmp_path_factory):
    """A 60-galaxy demo (64 px) through galaxies, splits and the segmentation group, in real Dagster runs."""
    from dagster_project.runner import run_pipeline
    from features.sources.synthetic import SyntheticSurvey
    from stages.sources import register_source
    from warehouse import Warehouse

    wh = Warehouse.open(tmp_path_factory.mktemp("seg") / "wh")
    shards = register_source(wh, SyntheticSurvey(n=60, seed=0, size=64), shard_size=60)
    assets = ["galaxies", "duplicate_groups", "splits", "pseudo_labels", "unet", "masks"]
    config = {"ops": {"unet": {"config": {"size": 32, "epochs": 3, "base": 8, "depth": 2}}}}
    report = run_pipeline(wh, shards, assets=assets, run_config=config, progress=False, log=lambda m: None)
    return wh, report


def test_segmentation_stage_end_to_end(demo_segmented):
    wh, report = demo_segmented
    assert not report.failed, report.failed
    assert wh.count("pseudo_labels") == 60 and wh.count("masks") == 60
    row = [r for r in wh.read("models").to_pylist() if r["name"] == "unet"][-1]
    assert row["kind"] == "segmentation" and row["seed"] == 0
    assert {"images", "pseudo_labels", "splits", "truth"} <= set(json.loads(row["table_versions_json"]))
    gate = json.loads(row["gate_json"])
    assert gate["passed"] == row["gate_passed"]
    assert gate["overall"]["n"] > 0 and 0 <= gate["overall"]["otsu_iou"] <= 1 and 0 <= gate["overall"]["unet_iou"] <= 1
    assert set(gate["per_class"]) and json.loads(row["config_json"])["size"] == 32
    view = wh.sql("SELECT * FROM galaxy_masks").to_dicts()
    assert len(view) == 60
    g = wh.read("galaxies", columns=["galaxy_id", "pxscale"]).to_pydict()
    scale = dict(zip(g["galaxy_id"], g["pxscale"]))
    for r in view:
        assert r["area_arcsec2"] == pytest.approx(r["area_px"] * scale[r["galaxy_id"]] ** 2)
        assert r["iou_truth"] is None or 0 <= r["iou_truth"] <= 1
    assert "unet" in report.metadata and "montage" in report.metadata["unet"]
    stored = wh.read("masks", columns=["mask_png", "area_px"]).to_pylist()[0]
    from warehouse.images import decode_image

    assert int((decode_image("png", stored["mask_png"]) > 0).sum()) == stored["area_px"]


def test_unet_check_fails_in_a_real_run_when_it_is_worse(demo_segmented):
    """One optimizer step: the U-Net is near random and must lose to Otsu; its check fails, the run goes on."""
    from dagster_project.runner import run_pipeline

    wh, _ = demo_segmented
    config = {"ops": {"unet": {"config": {"size": 32, "epochs": 1, "max_steps": 1, "base": 4, "depth": 2,
                                          "lr": 1e-6}}}}
    report = run_pipeline(wh, [], assets=["unet"], run_config=config, progress=False, log=lambda m: None)
    assert not report.failed
    assert any(c.startswith("unet:beats_otsu") for c in report.checks_failed), report.checks_failed
    row = [r for r in wh.read("models").to_pylist() if r["name"] == "unet"][-1]
    assert row["gate_passed"] is False and row["version"] == 2
    assert wh.sql("SELECT DISTINCT model_version FROM galaxy_masks").to_dicts() == [{"model_version": 1}]  # v2 wrote none


def test_show_png_draws_the_mask_outline(demo_segmented, tmp_path):
    """``astrovision show ID --png`` (a real subprocess) overlays the stored mask's outline."""
    import os
    import subprocess
    import sys

    from PIL import Image

    from features.pixels import model_input_uint8
    from features.segmentation.overlay import outline
    from stages.segmentation import stored_mask

    wh, _ = demo_segmented
    row = wh.sql("SELECT galaxy_id FROM masks WHERE area_px > 20 ORDER BY galaxy_id LIMIT 1").to_dicts()[0]
    gid, png = row["galaxy_id"], tmp_path / "g.png"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-m", "service.cli", "--home", str(wh.root), "show", gid, "--png", str(png)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "outline of the unet v" in proc.stdout and "[masks]" in proc.stdout
    drawn = np.asarray(Image.open(png))
    labels, _, _ = stored_mask(wh, gid)
    edge = outline(labels > 0) & ~outline(labels == 2)
    assert np.all(drawn[edge] == (0, 255, 0))
    inside = (labels > 0) & ~outline(labels > 0) & ~outline(labels == 2)
    assert np.array_equal(drawn[inside], model_input_uint8(wh.read_image(gid))[inside])


def test_pseudo_labels_are_not_recomputed(demo_segmented):
    from stages.segmentation import build_pseudo_labels

    wh, _ = demo_segmented
    out = build_pseudo_labels(wh)
    assert out.written == 0 and out.already == 60 and wh.count("pseudo_labels") == 60


def test_unet_and_masks_without_their_inputs_are_one_line_errors(warehouse):
    from models.errors import MissingInputError
    from stages.segmentation import build_pseudo_labels, train_unet, write_masks

    with pytest.raises(MissingInputError, match="materialize the splits asset first"):
        train_unet(warehouse)
    with pytest.raises(MissingInputError, match="ingest a source first"):
        build_pseudo_labels(warehouse)
    with pytest.raises(MissingInputError, match="no trained model 'unet'"):
        write_masks(warehouse)


def test_train_list_shows_the_unet_without_a_balanced_accuracy(demo_segmented, capsys):
    from service.cli import main

    wh, _ = demo_segmented
    assert main(["--home", str(wh.root), "train", "--list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("unet"))
    assert "test_bacc=-" in line and "label=pseudo_labels:" in line


def test_unet_trains_on_its_budget_and_records_it(demo_segmented):
    """``max_train`` caps the U-Net's training galaxies; the registry row says how many and what was left out."""
    from dagster_project.defs.segmentation.assets import UNetConfig
    from models.config import TRAIN_BUDGETS

    assert UNetConfig().max_train == TRAIN_BUDGETS["unet"] == 2048
    wh, _ = demo_segmented
    logs: list[str] = []
    cfg = SegFitConfig(size=32, epochs=1, batch_size=8, base=4, depth=2, max_steps=1, max_train=20)
    from stages.segmentation import train_unet

    out = train_unet(wh, cfg, log=logs.append)
    row = [r for r in wh.read("models").to_pylist() if r["name"] == "unet"][-1]
    assert row["version"] == out.version and out.n["train"] == 20 == out.fit["n_train_used"]
    assert json.loads(row["config_json"])["max_train"] == 20
    note = json.loads(row["metrics_json"])["notes"][0]
    assert "budget: trained on 20 of" in note and "max_train 20" in note
    assert any("budget: trained on 20 of" in m for m in logs)


def _toy_images_warehouse(root):
    """40 toy stamps (two of them blank) plus two 4-px images Otsu cannot label (``SEG_OTSU_FAILED``)."""
    import pyarrow as pa

    from models.toy import toy_images, toy_rows
    from warehouse import Warehouse

    wh = Warehouse.open(root)
    for source, n, size in (("toy", 40, 48), ("tiny", 2, 4)):
        images, y = toy_images(n, size, seed=1)
        if source == "toy":
            images[3] = 0
            images[17] = 0
        gal, img = toy_rows(images, y, source=source)
        wh.upsert("galaxies", pa.table(gal))
        wh.upsert("images", pa.table(img))
    return wh


def test_pseudo_labels_in_a_process_pool_equal_the_serial_ones(tmp_path):
    """Issue 25: the pool (two processes, chunks smaller than the table) writes the very rows of the serial loop."""
    from stages.segmentation import build_pseudo_labels

    columns = ["galaxy_id", "method", "mask_png", "height", "width", "threshold_low", "threshold_high",
               "background", "rms", "area_px", "bulge_px", "flags"]
    tables, outcomes = [], []
    for name, workers, chunk in (("serial", 1, 256), ("pool", 2, 16)):
        wh = _toy_images_warehouse(tmp_path / name)
        outcomes.append(build_pseudo_labels(wh, workers=workers, chunk=chunk))
        tables.append(wh.read("pseudo_labels", columns=columns).sort_by("galaxy_id"))
    serial, pooled = (t.to_pylist() for t in tables)
    assert len(serial) == 42
    for a, b in zip(serial, pooled):  # exact, NaN (a failure's thresholds) equal to NaN
        assert a.keys() == b.keys() and all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a), a["galaxy_id"]
    assert outcomes[0].failed == outcomes[1].failed >= 4 and outcomes[0].flag_counts == outcomes[1].flag_counts
    assert outcomes[1].flag_counts.get("SEG_OTSU_FAILED") == 2
