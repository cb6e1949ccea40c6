"""The segmentation stage: Otsu pseudo-labels, the ``unet`` model trained on them, its masks, scored
against the demo's true masks.

What the Dagster segmentation assets call. Each function takes a :class:`warehouse.Warehouse` (``wh``),
reads images, pseudo-labels, splits and truth through it, calls the science in
:mod:`features.segmentation`, :mod:`models.unet` and :mod:`models.segfit`, and writes with this run's id.
No Dagster and no argparse here.

Training uses the classifier split set (``splits``, default ``label-s0-f70.15.15``): the U-Net trains on the train
galaxies whose pseudo-label holds a galaxy, chooses its epoch on the val galaxies' pseudo-labels, and is
scored on the test galaxies against the TRUE masks (``truth``; demo only), beside the Otsu
pseudo-labels of the same galaxies. Its gate: the U-Net's mean IoU with the true masks is above Otsu's
on the same test galaxies (a weakly supervised model earns its place only if it denoises its labels).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from features.errors import InputError
from features.flags import Flag
from features.parallel import step_cores
from features.segmentation import (
    CLASS_NAMES,
    PSEUDO_LABEL_METHOD,
    OtsuOptions,
    dice,
    iou,
    keep_central,
    mask_shape,
    montage_png,
    overlay_outline,
    pseudo_label_image,
)
from features.segmentation.otsu import FAILED
from features.weights import WeightsOrigin
from models.errors import MissingInputError
from models.splits import split_content_hash, split_set_name
from stages.versions import get_model
from warehouse.images import decode_image, encode_image
from warehouse.sqltext import quote

__all__ = ["MIN_TRAIN", "MIN_VAL", "MODEL_NAME", "MasksOutcome", "PseudoLabelOutcome", "UNetOutcome",
           "build_pseudo_labels", "load_unet", "read_labels", "score_against_truth", "stored_mask", "train_unet", "write_masks"]

LogFn = Callable[[str], None]
MODEL_NAME = "unet"
"""Registry name (and asset name) of the segmentation model."""
MIN_TRAIN, MIN_VAL = 16, 2
"""Fewest train and val galaxies with a usable pseudo-label the U-Net is trained on (else it is skipped)."""


def _quiet(message: str) -> None:
    return None


# ------------------------------------------------------------------------------------ pseudo-labels
@dataclass
class PseudoLabelOutcome:
    """What :func:`build_pseudo_labels` wrote."""

    method: str
    written: int
    already: int
    failed: int
    flag_counts: dict[str, int]
    seconds: float
    table_version: int | None


def _pseudo_label_row(args: tuple[np.ndarray, str, str, OtsuOptions | None]) -> dict[str, Any]:
    """One galaxy's ``pseudo_labels`` row (without ``galaxy_id`` and ``method``): what a pool worker runs."""
    image, image_kind, bands, options = args
    try:
        pl = pseudo_label_image(image, image_kind=image_kind, bands=bands, options=options)
        labels, thr, bg, rms, flags = pl.labels, pl.thresholds, pl.background, pl.rms, pl.flags
    except InputError:
        labels = np.zeros(np.shape(image)[:2], dtype=np.uint8)
        thr, bg, rms, flags = (math.nan, math.nan), math.nan, math.nan, int(Flag.SEG_OTSU_FAILED)
    return {"mask_png": encode_image(labels)[1], "height": labels.shape[0], "width": labels.shape[1],
            "threshold_low": thr[0], "threshold_high": thr[1], "background": bg, "rms": rms,
            "area_px": int(np.count_nonzero(labels)), "bulge_px": int(np.count_nonzero(labels == 2)),
            "flags": int(flags)}


def build_pseudo_labels(wh: Any, *, options: OtsuOptions | None = None, chunk: int = 256,
                        run_id: str | None = None, log: LogFn | None = None,
                        workers: int | None = None) -> PseudoLabelOutcome:
    """Otsu pseudo-labels (:func:`features.segmentation.pseudo_label_image`) of every galaxy without one.

    A galaxy whose image cannot be read as a plane (smaller than 8 px) gets an empty label flagged
    ``SEG_OTSU_FAILED``; nothing stops the batch. The galaxies of a chunk are labelled by ``workers``
    processes (default: the step's cores, :func:`features.parallel.step_cores`; 1: in this process);
    the rows are the same either way (``tests/test_segmentation.py``).
    """
    from features.parallel import ordered_pool

    log = log or _quiet
    if not wh.exists("images"):
        raise MissingInputError(f"table 'images' does not exist in {wh.root}; ingest a source first")
    meta = wh.read("images", columns=["galaxy_id", "image_kind", "bands"]).to_pydict()
    done: set[str] = set()
    if wh.exists("pseudo_labels"):
        done = set(wh.read("pseudo_labels", columns=["galaxy_id"], where=f"method = {quote(PSEUDO_LABEL_METHOD)}")
                   .column("galaxy_id").to_pylist())
    todo = [i for i, g in enumerate(meta["galaxy_id"]) if g not in done]
    t0 = time.perf_counter()
    counts: dict[str, int] = {}
    failed = 0
    version = None
    with ordered_pool(workers, preload=["stages.segmentation"]) as pmap:
        for start in range(0, len(todo), chunk):
            idx = todo[start:start + chunk]
            ids = [meta["galaxy_id"][i] for i in idx]
            args = [(image, meta["image_kind"][i], meta["bands"][i], options)
                    for i, image in zip(idx, wh.read_images(ids))]
            rows = [{"galaxy_id": gid, "method": PSEUDO_LABEL_METHOD, **row}
                    for gid, row in zip(ids, pmap(_pseudo_label_row, args))]
            for row in rows:
                for f in Flag(row["flags"]):
                    counts[f.name] = counts.get(f.name, 0) + 1
                failed += bool(row["flags"] & FAILED)
            version = wh.upsert("pseudo_labels", rows, run_id=run_id)
            log(f"pseudo_labels: {start + len(idx)}/{len(todo)} galaxies labelled")
    if version is None and wh.exists("pseudo_labels"):
        version = int(wh.dataset("pseudo_labels").version)
    return PseudoLabelOutcome(PSEUDO_LABEL_METHOD, len(todo), len(done), failed, counts,
                              time.perf_counter() - t0, version)


def read_labels(wh: Any, galaxy_ids: Sequence[str], *, method: str = PSEUDO_LABEL_METHOD,
                version: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """The pseudo-labels (uint8 ``(H, W)``) and flags of ``galaxy_ids``, in that order.

    Raises
    ------
    models.errors.MissingInputError
        A galaxy has no pseudo-label of ``method``.
    """
    t = wh.read("pseudo_labels", columns=["galaxy_id", "mask_png", "flags"], where=f"method = {quote(method)}",
                version=version).to_pydict()
    at = {g: i for i, g in enumerate(t["galaxy_id"])}
    missing = [g for g in galaxy_ids if g not in at]
    if missing:
        raise MissingInputError(f"{len(missing)} galaxies have no {method} pseudo-label (e.g. {missing[:3]}); "
                                "materialize pseudo_labels first")
    labels = [decode_image("png", t["mask_png"][at[g]]) for g in galaxy_ids]
    return labels, np.asarray([t["flags"][at[g]] for g in galaxy_ids], dtype=np.int64)


def _true_masks(wh: Any, galaxy_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """The demo's true masks of those galaxies that have one (``truth.mask_png``)."""
    if not wh.exists("truth") or not galaxy_ids:
        return {}
    have = wh.has_ids("truth", list(galaxy_ids))
    if not have:
        return {}
    t = wh.take("truth", have, columns=["mask_png"]).column("mask_png").to_pylist()
    return {g: decode_image("png", b) > 0 for g, b in zip(have, t)}


def score_against_truth(pred: Sequence[np.ndarray], otsu: Sequence[np.ndarray], truth: Sequence[np.ndarray],
                        classes: Sequence[str], otsu_ok: Sequence[bool] | None = None, *, seed: int = 0,
                        resamples: int = 2000) -> dict[str, Any]:
    """IoU and Dice of the predicted and the Otsu galaxy masks against the true masks, overall and per class.

    ``overall`` and ``per_class`` are over the galaxies whose pseudo-label did not fail (``otsu_ok``,
    default all): where Otsu gave a mask, so the comparison is not won on Otsu's flagged failures;
    ``all_galaxies`` includes those (an empty Otsu mask scores 0). The difference of mean IoU (U-Net
    minus Otsu, ``otsu_ok`` galaxies) gets a paired bootstrap 95 % interval over galaxies (``resamples``
    seeded draws). Empty inputs give NaN scores and ``n = 0``.
    """
    def per(masks: Sequence[np.ndarray], fn: Callable[[np.ndarray, np.ndarray], float]) -> np.ndarray:
        return np.asarray([fn(m > 0, t) for m, t in zip(masks, truth)], dtype=float)

    u_iou, o_iou = per(pred, iou), per(otsu, iou)
    u_dice, o_dice = per(pred, dice), per(otsu, dice)
    cls = np.asarray(list(classes), dtype=object)

    def summary(sel: np.ndarray) -> dict[str, float]:
        n = int(sel.sum())

        def mean(v: np.ndarray) -> float:
            return float(v[sel].mean()) if n else math.nan

        return {"n": n, "unet_iou": mean(u_iou), "otsu_iou": mean(o_iou), "unet_dice": mean(u_dice),
                "otsu_dice": mean(o_dice)}

    ok = np.ones(len(u_iou), dtype=bool) if otsu_ok is None else np.asarray(list(otsu_ok), dtype=bool)
    out: dict[str, Any] = {"overall": summary(ok), "all_galaxies": summary(np.ones(len(u_iou), dtype=bool)),
                           "per_class": {str(c): summary(ok & (cls == c)) for c in sorted(set(cls.tolist()))}}
    diff = (u_iou - o_iou)[ok]
    if len(diff):
        rng = np.random.default_rng(seed)
        boot = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
        out["iou_difference"] = {"mean": float(diff.mean()), "ci95": [float(np.percentile(boot, 2.5)),
                                                                      float(np.percentile(boot, 97.5))],
                                 "unet_better_share": float((diff > 0).mean())}
    return out


# ------------------------------------------------------------------------------------------ U-Net
@dataclass
class UNetOutcome:
    """What one :func:`train_unet` run produced (also in the registry row and the artefact dir)."""

    version: int
    artefact_dir: str
    config: dict[str, Any]
    seed: int
    split_name: str
    n: dict[str, int]
    fit: dict[str, Any]
    scores: dict[str, Any]
    gate_passed: bool
    gate: dict[str, Any]
    table_versions: dict[str, int]
    montage_png: bytes
    train_seconds: float
    notes: list[str] = field(default_factory=list)


def _stamps(wh: Any, ids: Sequence[str]) -> list[np.ndarray]:
    from features.pixels import model_input_uint8

    return [model_input_uint8(im) for im in wh.read_images(list(ids), threads=step_cores())]


def _predict(model: Any, stamps: Sequence[np.ndarray], size: int) -> list[np.ndarray]:
    """Label images at each stamp's own size, galaxy region kept as for the pseudo-labels."""
    from models.segfit import predict_labels, resize_images

    out: list[np.ndarray] = []
    for start in range(0, len(stamps), 128):
        chunk = stamps[start:start + 128]
        x = resize_images(list(chunk), size)
        by_shape: dict[tuple[int, int], list[int]] = {}
        for k, s in enumerate(chunk):
            by_shape.setdefault(tuple(s.shape[:2]), []).append(k)
        labels: list[np.ndarray | None] = [None] * len(chunk)
        for shape, ks in by_shape.items():
            pred = predict_labels(model, x[ks], shape)
            for k, p in zip(ks, pred):
                labels[k] = keep_central(p)
        out.extend(labels)  # type: ignore[arg-type]
    return out


def _split_rows(wh: Any, split_name: str) -> dict[str, list]:
    if not wh.exists("splits"):
        raise MissingInputError(f"table 'splits' does not exist in {wh.root}; materialize the splits asset first")
    t = wh.read("splits", columns=["galaxy_id", "split", "label", "label_name", "seed"],
                where=f"split_name = {quote(split_name)}")
    if t.num_rows == 0:
        raise MissingInputError(f"no split set {split_name!r} in the splits table (materialize splits for it first)")
    return t.to_pydict()


def _montage(stamps: Sequence[np.ndarray], otsu: Sequence[np.ndarray], pred: Sequence[np.ndarray],
             truth: Sequence[np.ndarray | None], classes: Sequence[str]) -> bytes:
    """One row per class (its first galaxy): image, Otsu, U-Net, truth outlines."""
    rows = []
    seen: set[str] = set()
    for k, c in enumerate(classes):
        if c in seen:
            continue
        seen.add(c)
        t = truth[k]
        panels = [stamps[k], overlay_outline(stamps[k], otsu[k]), overlay_outline(stamps[k], pred[k])]
        panels.append(overlay_outline(stamps[k], t.astype(np.uint8)) if t is not None else np.zeros_like(stamps[k]))
        rows.append((str(c), panels))
    return montage_png(rows, ["image", "Otsu", "U-Net", "truth"])


def _unet_inputs(wh: Any, split_name: str, max_train: int = 0,
                 seed: int = 0) -> tuple[dict[str, list], dict[str, int], dict[str, tuple], list[str]]:
    """The split rows, table versions, (ids, stamps, pseudo-labels, flags) per split, and notes.

    Train and val keep only galaxies whose pseudo-label did not fail; test keeps every galaxy. With
    ``max_train``, train keeps a seeded class-stratified sample of at most that many of them (the
    budget; the others' stamps are not read).
    """
    from stages.trainers import budget_note, subsample

    rows = _split_rows(wh, split_name)
    versions = {t: int(wh.dataset(t).version) for t in ("splits", "pseudo_labels", "images", "truth") if wh.exists(t)}
    if "pseudo_labels" not in versions:
        raise MissingInputError(f"table 'pseudo_labels' does not exist in {wh.root}; materialize pseudo_labels first")
    ids = {s: [g for g, sp in zip(rows["galaxy_id"], rows["split"]) if sp == s] for s in ("train", "val", "test")}
    cls_of = dict(zip(rows["galaxy_id"], rows["label"]))
    data: dict[str, tuple[list[str], list[np.ndarray], list[np.ndarray], np.ndarray]] = {}
    budget = ""
    for s, gids in ids.items():
        labels, flags = read_labels(wh, gids, version=versions["pseudo_labels"])
        keep = [k for k, f in enumerate(flags) if not f & FAILED] if s != "test" else list(range(len(gids)))
        if s == "train" and max_train and len(keep) > max_train:
            usable = [gids[k] for k in keep]
            chosen, _ = subsample(usable, np.array([cls_of[g] for g in usable]), max_train, seed)
            budget = budget_note(len(chosen), len(usable), max_train)
            chosen_set = set(chosen)
            keep = [k for k in keep if gids[k] in chosen_set]
        g = [gids[k] for k in keep]
        data[s] = (g, _stamps(wh, g), [labels[k] for k in keep], flags[keep])
    n = {s: len(v[0]) for s, v in data.items()}
    if n["train"] < MIN_TRAIN or n["val"] < MIN_VAL or not ids["test"]:
        raise MissingInputError(f"unet: too few galaxies with a usable pseudo-label to train on (train {n['train']}, "
                                f"val {n['val']}, test {len(ids['test'])}; at least {MIN_TRAIN}, {MIN_VAL} and 1 "
                                "needed): add galaxies")
    notes = [f"left out of training: {len(ids['train']) - n['train']} train and {len(ids['val']) - n['val']} val "
             "galaxies whose pseudo-label failed (flags SEG_OTSU_FAILED / SEG_NO_CENTRAL_SOURCE / IMAGE_BLANK)"
             + (f" or beyond the budget ({budget})" if budget else "")]
    return rows, versions, data, notes


def _unet_gate(scores: dict[str, Any]) -> dict[str, Any]:
    """The U-Net's gate: its mean IoU with the true masks above Otsu's on the same test galaxies."""
    overall = scores["overall"]
    if overall["n"] == 0:
        passed = False
        reason = "no true masks for the test galaxies (the truth table holds the demo's only): the gate cannot be measured"
    else:
        passed = bool(overall["unet_iou"] > overall["otsu_iou"])
        reason = (f"U-Net mean IoU {overall['unet_iou']:.4f} vs Otsu {overall['otsu_iou']:.4f} against the true "
                  f"masks of the {overall['n']} test galaxies with an Otsu mask: U-Net {'beats' if passed else 'does NOT beat'} Otsu")
    return {"rule": "mean IoU with the true masks on the test galaxies whose pseudo-label did not fail: "
                    "U-Net > Otsu pseudo-labels", "passed": passed, "reason": reason, **scores}


def train_unet(wh: Any, config: Any = None, *, seed: int = 0, split_name: str | None = None,
               run_id: str | None = None, log: LogFn | None = None) -> UNetOutcome:
    """Train the U-Net on the pseudo-labels, score it and Otsu against the true masks, register it.

    Parameters
    ----------
    config : models.segfit.SegFitConfig, optional
    seed : int
    split_name : str, optional
        Default ``split_set_name("label", 0)`` (the classifiers' default split set, ``label-s0-f70.15.15``).

    Raises
    ------
    models.errors.MissingInputError
        No split set, no pseudo-labels, or fewer than :data:`MIN_TRAIN` / :data:`MIN_VAL` galaxies with a
        usable pseudo-label in train / val, or an empty test split.
    """
    import torch

    from models.segfit import SegFitConfig, fit_segmenter, resize_images, resize_labels
    from models.unet import build_unet
    from stages.finish import RegistryRow, commit_run

    log = log or _quiet
    cfg = config or SegFitConfig()
    split_name = split_name or split_set_name("label", 0)
    rows, versions, data, notes = _unet_inputs(wh, split_name, cfg.max_train, seed)
    n = {s: len(v[0]) for s, v in data.items()}
    log(f"unet: {notes[0]}")
    cls_of = dict(zip(rows["galaxy_id"], rows["label_name"]))
    train = (resize_images(data["train"][1], cfg.size), resize_labels(data["train"][2], cfg.size))
    val = (resize_images(data["val"][1], cfg.size), resize_labels(data["val"][2], cfg.size))
    torch.manual_seed(seed)
    model = build_unet(len(CLASS_NAMES), base=cfg.base, depth=cfg.depth)
    t0 = time.perf_counter()
    fit = fit_segmenter(model, train, val, cfg, seed=seed, log=log)
    seconds = time.perf_counter() - t0

    test_ids, test_stamps, test_otsu, test_flags = data["test"]
    t1 = time.perf_counter()
    pred = _predict(model, test_stamps, cfg.size)
    infer_s = time.perf_counter() - t1
    truths = _true_masks(wh, test_ids)
    scored = [k for k, g in enumerate(test_ids) if g in truths]
    scores = score_against_truth([pred[k] for k in scored], [test_otsu[k] for k in scored],
                                 [truths[test_ids[k]] for k in scored], [cls_of[test_ids[k]] for k in scored],
                                 [not test_flags[k] & FAILED for k in scored], seed=seed)
    gate = _unet_gate(scores)
    passed, reason = gate["passed"], gate["reason"]
    png = _montage(test_stamps, test_otsu, pred, [truths.get(g) for g in test_ids], [cls_of[g] for g in test_ids])
    fit_info = {**fit.as_dict(), "n_train_used": n["train"],
                "inference_galaxies_per_s": len(test_ids) / infer_s if infer_s else math.nan}
    tmp = Path(wh.models_dir) / MODEL_NAME / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir(parents=True, exist_ok=True)

    def write(directory: Path, version: int, final: Path) -> None:
        torch.save(model.state_dict(), directory / "model.pt")
        (directory / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        (directory / "metrics.json").write_text(json.dumps({"fit": fit_info, "gate": gate}, indent=2, default=float))
        (directory / "montage.png").write_bytes(png)

    def make_row(version: int, final: Path) -> RegistryRow:
        return RegistryRow(
            name=MODEL_NAME, version=version, kind="segmentation",
            label_column=f"pseudo_labels:{PSEUDO_LABEL_METHOD}", split_name=split_name,
            classes_json=json.dumps([{"label": i, "name": c} for i, c in enumerate(CLASS_NAMES)]),
            config_json=json.dumps({**asdict(cfg), "seed": seed, "split_name": split_name,
                                    "pseudo_label_method": PSEUDO_LABEL_METHOD}),
            seed=seed, split_seed=int(rows["seed"][0]), split_version=versions.get("splits"),
            split_hash=split_content_hash(rows["galaxy_id"], rows["split"], rows["label"]),
            metrics_json=json.dumps({"fit": fit_info, "test": scores, "notes": notes}, default=float),
            test_balanced_accuracy=None, test_balanced_accuracy_low=None, test_balanced_accuracy_high=None,
            gate_passed=passed, gate_json=json.dumps(gate, default=float), excluded_classes_json="[]",
            artefact_path=str(final), table_versions_json=json.dumps(versions, sort_keys=True),
            weights_origin=str(WeightsOrigin.SCRATCH), train_seconds=float(seconds))

    row = commit_run(wh, tmp, make_row, write=write, run_id=run_id)
    version, final = row.version, row.artefact_path
    log(f"unet v{version}: {reason}; {seconds:.1f} s training")
    return UNetOutcome(version, final, asdict(cfg), seed, split_name, n, fit_info, scores, passed, gate,
                       versions, png, seconds, notes)


def load_unet(wh: Any, version: int | None = None) -> tuple[Any, dict[str, Any], Any]:
    """The registered U-Net (eval mode), its registry row and its :class:`models.segfit.SegFitConfig`."""
    import torch

    from models.segfit import SegFitConfig
    from models.unet import build_unet

    row = get_model(wh, MODEL_NAME, version)
    raw = json.loads(row["config_json"])
    cfg = SegFitConfig(**{k: v for k, v in raw.items() if k in SegFitConfig.__dataclass_fields__})
    model = build_unet(len(CLASS_NAMES), base=cfg.base, depth=cfg.depth)
    model.load_state_dict(torch.load(f"{row['artefact_path']}/model.pt", map_location="cpu", weights_only=True))
    model.eval()
    return model, row, cfg


# ------------------------------------------------------------------------------------------ masks
@dataclass
class MasksOutcome:
    """What :func:`write_masks` wrote."""

    model_version: int
    gate_passed: bool
    written: int
    already: int
    covers_centre_share: float
    galaxies_per_s: float
    mean_iou_otsu: float


def write_masks(wh: Any, *, version: int | None = None, chunk: int = 256, run_id: str | None = None,
                log: LogFn | None = None) -> MasksOutcome:
    """Predict, measure and store the mask of every galaxy without one for a U-Net version (default latest).

    Each row has the shape features (:func:`features.segmentation.mask_shape`), whether the mask
    covers the stamp centre, the IoU with the galaxy's Otsu pseudo-label (``iou_otsu``: agreement, not
    accuracy), and, where the ``truth`` table has the galaxy, IoU and Dice of the mask and of the
    pseudo-label against the true mask.
    """
    log = log or _quiet
    model, row, cfg = load_unet(wh, version)
    v = int(row["version"])
    gal = wh.read("galaxies", columns=["galaxy_id", "pxscale"]).to_pydict()
    done: set[str] = set()
    if wh.exists("masks"):
        done = set(wh.read("masks", columns=["galaxy_id"],
                           where=f"model_name = {quote(MODEL_NAME)} AND model_version = {v}").column("galaxy_id").to_pylist())
    split_of: dict[str, str] = {}
    if wh.exists("splits"):
        s = wh.read("splits", columns=["galaxy_id", "split"], where=f"split_name = {quote(row['split_name'])}").to_pydict()
        split_of = dict(zip(s["galaxy_id"], s["split"]))
    todo = [k for k, g in enumerate(gal["galaxy_id"]) if g not in done]
    written, centre, agree, infer_s = 0, 0, [], 0.0
    for start in range(0, len(todo), chunk):
        ks = todo[start:start + chunk]
        ids = [gal["galaxy_id"][k] for k in ks]
        stamps = _stamps(wh, ids)
        t0 = time.perf_counter()
        pred = _predict(model, stamps, cfg.size)
        infer_s += time.perf_counter() - t0
        otsu, _ = read_labels(wh, ids)
        truths = _true_masks(wh, ids)
        out = []
        for k, gid, p, o in zip(ks, ids, pred, otsu):
            shape = mask_shape(p, gal["pxscale"][k])
            h, w = p.shape
            covers = bool(p[h // 2, w // 2] > 0)
            flags = (0 if shape.area_px else int(Flag.SEG_NO_CENTRAL_SOURCE)) | \
                (int(Flag.SEG_MASK_TOUCHES_EDGE) if shape.touches_edge else 0)
            t = truths.get(gid)
            agreement = iou(p > 0, o > 0)
            agree.append(agreement)
            centre += covers
            out.append({
                "galaxy_id": gid, "model_name": MODEL_NAME, "model_version": v, "mask_png": encode_image(p)[1],
                "height": h, "width": w, "area_px": shape.area_px, "area_arcsec2": shape.area_arcsec2,
                "centroid_x_px": shape.centroid_x_px, "centroid_y_px": shape.centroid_y_px,
                "ellipticity": shape.ellipticity, "bulge_fraction": shape.bulge_fraction, "covers_centre": covers,
                "split": split_of.get(gid), "iou_truth": iou(p > 0, t) if t is not None else None,
                "dice_truth": dice(p > 0, t) if t is not None else None,
                "otsu_iou_truth": iou(o > 0, t) if t is not None else None,
                "otsu_dice_truth": dice(o > 0, t) if t is not None else None,
                "iou_otsu": agreement, "flags": flags})
        wh.upsert("masks", out, run_id=run_id)
        written += len(out)
        log(f"masks: {written}/{len(todo)} galaxies (unet v{v})")
    return MasksOutcome(v, bool(row["gate_passed"]), written, len(done), centre / written if written else math.nan,
                        written / infer_s if infer_s else math.nan, float(np.mean(agree)) if agree else math.nan)


def stored_mask(wh: Any, galaxy_id: str) -> tuple[np.ndarray, str, int] | None:
    """The stored mask of the newest model version that has one for ``galaxy_id``: ``(labels, name, version)``.

    None when the ``masks`` table is absent or holds nothing for that galaxy.
    """
    if not wh.exists("masks"):
        return None
    rows = wh.read("masks", columns=["model_name", "model_version", "mask_png"],
                   where=f"galaxy_id = {quote(galaxy_id)}").to_pylist()
    if not rows:
        return None
    best = max(rows, key=lambda r: (r["model_name"] == MODEL_NAME, r["model_version"]))
    return decode_image("png", best["mask_png"]), best["model_name"], int(best["model_version"])
