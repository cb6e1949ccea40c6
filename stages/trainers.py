"""The fitting step of each classifier kind: images (CNN, EfficientNet, DINOv2 fine-tune) and the probe.

Each ``train_*`` reads its inputs through the warehouse, fits (torch models on :mod:`models.loop` through
:func:`models.fit.fit`), writes its weights into the run's temporary artefact directory and returns a
:class:`FitOutput`; :func:`stages.finish.finish_run` then gates, calibrates, conformalizes and registers it.
Fusion's step is :func:`stages.fusion.train_fusion`; :data:`stages.training.FIT_STEPS` maps each
registry kind (:attr:`models.registry.ModelSpec.kind`) to its step. No Dagster, no argparse.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from features.weights import WeightsOrigin, WeightsProvenance
from models.config import FinetuneConfig, ImageConfig, ProbeConfig, resolve_device
from models.errors import MissingInputError
from models.splits import SPLIT_NAMES
from stages.splits import SplitData
from stages.versions import list_models
from warehouse.schemas.embeddings import embedding_table

__all__ = ["FitOutput", "FitStep", "Used", "budget_note", "finetune_inputs", "latest_probe", "subsample",
           "train_images", "train_probe", "versus_probe"]

LogFn = Callable[[str], None]
Used = dict[str, tuple[list[str], np.ndarray]]
"""Per split, the galaxy ids a run used and their class indices."""
FitOutput = tuple[dict[str, np.ndarray], Used, WeightsProvenance, dict[str, Any]]
"""What a kind's fitting step returns: val/test probabilities, the galaxies used, the weights, the fit record."""
FitStep = Callable[[Any, str, Any, SplitData, Path, LogFn, list[str]], FitOutput]
"""A kind's fitting step: ``step(wh, name, cfg, split, tmp, log, notes) -> FitOutput`` (it may append notes);
``cfg`` is the model's own config (:attr:`models.registry.ModelSpec.config_cls`), a :class:`RunConfig`."""


def subsample(ids: list[str], y: np.ndarray, n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """A class-stratified seeded subsample of at most ``n`` galaxies (at least one per class)."""
    if not n or n >= len(ids):
        return ids, y
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    classes = np.unique(y)
    for c in classes:
        members = np.flatnonzero(y == c)
        k = max(1, round(n * len(members) / len(ids)))
        keep.extend(rng.choice(members, size=min(k, len(members)), replace=False).tolist())
    keep.sort()
    return [ids[i] for i in keep], y[keep]


def budget_note(used: int, available: int, cap: int) -> str:
    """The note a run capped by its training budget records (``max_train``, :data:`models.config.TRAIN_BUDGETS`)."""
    return (f"budget: trained on {used} of {available} training galaxies (max_train {cap}: a seeded, "
            f"class-stratified sample; {available - used} not trained on)")


def finetune_inputs(wh: Any, cfg: FinetuneConfig) -> FinetuneConfig:
    """The fine-tune's config with what its encoder needs: a CNN's own input size, the warehouse's weights.

    A CNN encoder (the warehouse's ``ssl_resnet18``, Zoobot's) is fine-tuned at the input size its
    embeddings were computed at (so the probe's head starts on the features it was fitted on); the
    warehouse's own encoder takes its weights file under the root (:func:`stages.ssl.ssl_weights`,
    checked against its record). A ViT keeps ``img_size`` (the CPU demo's 56 px). The registry stores
    the config returned, so predictions rebuild the same model.
    """
    from dataclasses import replace

    from features.embeddings import encoder_spec

    spec = encoder_spec(cfg.encoder)
    if spec.is_vit:
        return cfg
    if spec.trained_here and not cfg.weights_path and cfg.pretrained:
        from stages.ssl import ssl_weights

        cfg = replace(cfg, weights_path=str(ssl_weights(wh, spec.name).path))
    return replace(cfg, img_size=spec.img_size)


def input_stamp(cfg: Any) -> str:
    """What an image model's dataset feeds it: the fine-tuned encoder's own ``stamp`` (``ssl_resnet18``
    was trained on, and embeds, galaxy-centred stamps, so its probe's head was fitted on those), else
    the whole frame."""
    if not isinstance(cfg, FinetuneConfig):
        return "frame"
    from features.embeddings import encoder_spec

    return encoder_spec(cfg.encoder).stamp


def latest_probe(wh: Any, cfg: FinetuneConfig, split: SplitData) -> tuple[dict[str, Any], Path] | None:
    for row in reversed(list_models(wh)):
        if row["name"] != "dinov2_probe" or row.get("split_hash") != split.content_hash:
            continue  # only a probe fitted on this very split set (by content, not by name)
        if json.loads(row["config_json"]).get("encoder") != cfg.encoder or row["classes_json"] != split.classes_json():
            continue
        path = Path(row["artefact_path"]) / "probe.npz"
        if path.is_file():
            return row, path
    return None


def _init_head_from_probe(wh: Any, model: Any, origin: WeightsProvenance, cfg: FinetuneConfig,
                          split: SplitData) -> str:
    """Copy the latest matching probe into the fine-tune head, if it was fitted on the same weights."""
    from models.probe import LinearProbe

    probe = latest_probe(wh, cfg, split)
    if probe is None:
        return ("head initialised at zero (no dinov2_probe of this encoder trained on this split set, "
                f"{split.split_name} #{split.content_hash}, in the registry)")
    row, path = probe
    table = embedding_table(cfg.encoder)
    shas = set(wh.read(table, columns=["weights_sha256"]).column("weights_sha256").to_pylist()) if wh.exists(table) else set()
    if origin.sha256 is None or origin.sha256 not in shas:
        return (f"head initialised at zero: dinov2_probe v{row['version']} was fitted on embeddings of other "
                f"encoder weights than this backbone's ({origin}), so its weights would not transfer")
    p = LinearProbe.load(path)
    try:
        model.head.init_from_probe(p.mean, p.scale, p.coef, p.intercept)
    except ValueError as exc:
        return f"head initialised at zero: {exc}"
    return f"head initialised from dinov2_probe v{row['version']}"




def versus_probe(wh: Any, cfg: FinetuneConfig, split: SplitData, test_ids: list[str], y_test: np.ndarray,
                 test_probs: np.ndarray) -> dict[str, Any] | None:
    """The fine-tune against the probe it started from, on the same test galaxies: paired bootstrap.

    The probe is the latest ``dinov2_probe`` of the same encoder and split set
    (:func:`latest_probe`); both are scored on the test galaxies that have a stored embedding, with
    the same ``gate_resamples`` draws (:func:`models.baselines.bootstrap_balanced_accuracy`). The
    fine-tune beats the probe when the 95% interval of the paired difference lies above 0.

    Returns
    -------
    dict or None
        ``probe`` (name and version), ``n_test``, ``finetune`` / ``probe_balanced_accuracy``,
        ``difference``, ``ci95`` and ``beats_probe``; ``None`` when there is no such probe.
    """
    from models.baselines import bootstrap_balanced_accuracy
    from models.probe import LinearProbe
    from stages.model_inputs import read_embeddings

    found = latest_probe(wh, cfg, split)
    if found is None:
        return None
    row, path = found
    table = embedding_table(cfg.encoder)
    present = set(wh.read(table, columns=["galaxy_id"]).column("galaxy_id").to_pylist())
    keep = [i for i, g in enumerate(test_ids) if g in present]
    if not keep:
        return None
    probe = LinearProbe.load(path)
    probe_pred = probe.predict_proba(read_embeddings(wh, table, [test_ids[i] for i in keep])).argmax(axis=1)
    ours = np.asarray(test_probs)[keep].argmax(axis=1)
    point, reps = bootstrap_balanced_accuracy(np.asarray(y_test)[keep], {"finetune": ours, "probe": probe_pred},
                                              n_boot=cfg.gate_resamples, seed=cfg.seed)
    diff = reps["finetune"] - reps["probe"]
    lo, hi = (float(v) for v in np.quantile(diff, [0.025, 0.975]))
    return {"probe": f"dinov2_probe v{row['version']}", "n_test": len(keep),
            "finetune_balanced_accuracy": point["finetune"], "probe_balanced_accuracy": point["probe"],
            "difference": point["finetune"] - point["probe"], "ci95": [lo, hi], "beats_probe": lo > 0}


def train_images(wh: Any, name: str, cfg: ImageConfig, split: SplitData, tmp: Path, log: LogFn,
                 notes: list[str]) -> FitOutput:
    import torch

    from models.data import GalaxyImageDataset, auto_num_workers, make_loader
    from models.fit import evaluate, fit, seed_everything
    from models.registry import build_model

    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model, origin = build_model(name, split.num_classes, cfg)
    if origin.is_random:
        log(f"{name}: no pretrained weights found; training from RANDOM INIT (allowed by the config)")
    params = None
    if isinstance(cfg, FinetuneConfig):
        params = model.param_groups(cfg.lr, cfg.weight_decay, cfg.layer_decay, cfg.head_lr_scale)
        notes.append(_init_head_from_probe(wh, model, origin, cfg, split) if cfg.init_from_probe
                     else "head initialised at zero (init_from_probe is off)")
        log(f"{name}: {notes[-1]}")
    workers = auto_num_workers(device) if cfg.num_workers < 0 else cfg.num_workers
    train_ids, train_y = subsample(split.ids["train"], split.y["train"], cfg.max_train, cfg.seed)
    if len(train_ids) < len(split.ids["train"]):
        notes.append(budget_note(len(train_ids), len(split.ids["train"]), cfg.max_train))
        log(f"{name}: {notes[-1]}")
    ds = {s: GalaxyImageDataset(wh, ids, y, img_size=cfg.img_size, stamp=input_stamp(cfg))
          for s, ids, y in (("train", train_ids, train_y), ("val", split.ids["val"], split.y["val"]),
                            ("test", split.ids["test"], split.y["test"]))}
    pin = device.type == "cuda"
    loaders = {
        "train": make_loader(ds["train"], batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed,
                             num_workers=workers, pin_memory=pin, drop_last=len(train_ids) > cfg.batch_size),
        "val": make_loader(ds["val"], batch_size=cfg.batch_size * 2, shuffle=False, num_workers=workers, pin_memory=pin),
        "test": make_loader(ds["test"], batch_size=cfg.batch_size * 2, shuffle=False, num_workers=workers,
                            pin_memory=pin),
    }
    if isinstance(cfg, FinetuneConfig):
        from models.data import prepare_batch
        from models.dinov2 import standardise_head

        model.to(device)
        plain = make_loader(ds["train"], batch_size=cfg.batch_size, shuffle=False)
        used = standardise_head(model, (prepare_batch(x, device) for x, _ in plain), max_batches=4)
        notes.append(f"head standardisation re-estimated on {used} training galaxies at {cfg.img_size} px")
    counts = np.bincount(train_y, minlength=split.num_classes).tolist()
    result = fit(model, loaders["train"], loaders["val"], cfg.fit_config(), seed=cfg.seed, log=log, device=device,
                 num_classes=split.num_classes, class_counts=counts, param_groups=params, checkpoint_dir=tmp)
    probs, ys = {}, {}
    for s in ("val", "test"):
        probs[s], ys[s] = evaluate(model, loaders[s], device, amp=cfg.amp)
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, tmp / "model.pt")
    (tmp / "best.pt").unlink(missing_ok=True)
    info = result.as_dict()
    info["checkpoint"] = str(tmp / "model.pt")
    info["num_workers"] = workers
    info["device"] = str(device)
    info["n_train_used"] = len(train_ids)
    if isinstance(cfg, FinetuneConfig):
        info["backbone"] = cfg.encoder
        info["vs_probe"] = versus_probe(wh, cfg, split, split.ids["test"], ys["test"], probs["test"])
        if info["vs_probe"]:
            v = info["vs_probe"]
            log(f"{name} ({cfg.encoder}) vs {v['probe']} on {v['n_test']} test galaxies: balanced accuracy "
                f"{v['finetune_balanced_accuracy']:.3f} vs {v['probe_balanced_accuracy']:.3f}, difference "
                f"{v['difference']:+.3f} [95% paired CI {v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]")
    used = {"train": (train_ids, train_y), **{s: (split.ids[s], ys[s]) for s in ("val", "test")}}
    return probs, used, origin, info


def train_probe(wh: Any, name: str, cfg: ProbeConfig, split: SplitData, tmp: Path, log: LogFn,
                notes: list[str]) -> FitOutput:
    from models.probe import fit_probe
    from stages.finish import pixel_baseline_beside
    from stages.model_inputs import read_embeddings

    table = embedding_table(cfg.encoder)
    if not wh.exists(table):
        raise MissingInputError(
            f"the dinov2_probe needs the embeddings table {table!r}, which does not exist in {wh.root}; "
            f"materialize {table} (astrovision embed / the embeddings assets) first"
        )
    present = set(wh.read(table, columns=["galaxy_id"]).column("galaxy_id").to_pylist())
    x: dict[str, np.ndarray] = {}
    ys: dict[str, np.ndarray] = {}
    used: Used = {}
    for s in SPLIT_NAMES:
        ids, y = split.ids[s], split.y[s]
        if s == "train":
            ids, y = subsample(ids, y, cfg.max_train, cfg.seed)
        keep = [i for i, g in enumerate(ids) if g in present]
        if len(keep) < len(ids):
            notes.append(f"{len(ids) - len(keep)} {s} galaxies have no row in {table} and were left out")
            log(notes[-1])
        if not keep:
            raise MissingInputError(f"no {s} galaxy of split {split.split_name!r} has an embedding in {table!r}")
        x[s] = read_embeddings(wh, table, [ids[i] for i in keep])
        ys[s] = y[keep]
        used[s] = ([ids[i] for i in keep], ys[s])
    stored = wh.read(table, columns=["weights_origin", "weights_sha256"])
    origins = sorted({WeightsOrigin(o) for o in stored.column("weights_origin").to_pylist()})
    shas = set(stored.column("weights_sha256").to_pylist())
    random = any(o.is_random for o in origins)
    origin = WeightsProvenance(WeightsOrigin.RANDOM_INIT if random else origins[0],
                               sha256=shas.pop() if len(shas) == 1 else None,
                               via=f"embeddings {table}: {', '.join(origins)}")
    if random:
        log(f"dinov2_probe: the embeddings in {table} come from a RANDOM-WEIGHTS encoder")
    t0 = time.perf_counter()
    with pixel_baseline_beside(wh, used, split.num_classes, cfg.seed, log):  # the gate's, on the idle core
        probe = fit_probe(x["train"], ys["train"], x["val"], ys["val"], num_classes=split.num_classes, seed=cfg.seed)
        seconds = time.perf_counter() - t0
    probe.save(tmp / "probe.npz")
    log(f"dinov2_probe: C = {probe.C:g} chosen on validation (balanced accuracy {probe.val_scores[probe.C]:.4f}); "
        f"{x['train'].shape[1]}-D standardised features, {len(ys['train'])} training galaxies")
    probs = {s: probe.predict_proba(x[s]).astype(np.float32) for s in ("val", "test")}
    info = {"C": probe.C, "val_scores": {f"{c:g}": v for c, v in probe.val_scores.items()}, "seconds": seconds,
            "features": f"{table}: vector + patch_mean, {x['train'].shape[1]}-D, standardised",
            "n_train_used": len(ys["train"])}
    return probs, used, origin, info
