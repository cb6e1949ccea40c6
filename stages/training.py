"""The training stage: split sets, training runs and their registry rows, over a warehouse.

What the Dagster training assets and ``astrovision train`` call. Each function takes a
:class:`warehouse.Warehouse` (``wh``), reads its inputs, calls the science in :mod:`models`, writes the
artefact directory and the registry row, and returns an outcome with everything the caller reports.
No Dagster and no argparse here.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from features.weights import WeightsOrigin, WeightsProvenance
from models.baselines import (
    PIXEL_STAMP,
    Gate,
    balanced_accuracy_interval,
    gate,
    majority_predictions,
    pixel_features,
)
from models.calibration import CalibrationReport, apply_temperature, calibrate, log_probs, reliability_png
from models.config import TrainConfig, resolve_device
from models.conformal import SCORES, Conformalizer, set_report, val_halves
from models.errors import MissingInputError, SplitError, TooFewClassesError
from models.labels import Labels, resolve_labels
from models.metrics import classification_metrics, confusion_png
from models.registry import get_spec
from models.splits import (
    DEFAULT_FRACTIONS,
    SPLIT_NAMES,
    check_no_leak,
    class_counts,
    make_splits,
    split_content_hash,
    split_set_name,
    usable_classes,
)
from models.versions import artefact_dir, get_model, list_models, next_version, record_model
from stages.split_leaks import current_groups, split_leaks
from warehouse.schemas.embeddings import embedding_table
from warehouse.sqltext import quote

__all__ = [
    "AUTO_ENCODERS",
    "SplitData",
    "SplitsOutcome",
    "TrainOutcome",
    "build_splits",
    "config_from_registry",
    "load_split",
    "pixel_stamps",
    "read_labels",
    "resolve_encoder",
    "retrain",
    "train_model",
]

LogFn = Callable[[str], None]


AUTO_ENCODERS: tuple[str, ...] = ("dinov2_vits14", "dinov2_vitb14", "ssl_resnet18", "random_vits14")
"""Preference order of ``encoder="auto"``."""


def resolve_encoder(wh: Any, encoder: str, *, backbone: bool = False) -> str:
    """``"auto"`` -> the first of :data:`AUTO_ENCODERS` whose embeddings table exists (else the first).

    ``backbone``: only encoders a DINOv2 fine-tune can build (the ViTs), not ``ssl_resnet18``.
    """
    from features.embeddings import ENCODERS

    if encoder != "auto":
        return encoder
    for name in AUTO_ENCODERS:
        if backbone and ENCODERS[name].trained_here:
            continue
        if wh.exists(embedding_table(name)):
            return name
    return AUTO_ENCODERS[0]


# ------------------------------------------------------------------------------------------ splits
@dataclass
class SplitsOutcome:
    """What :func:`build_splits` wrote."""

    split_name: str
    label_column: str
    seed: int
    counts: dict[str, int]
    class_counts: dict[str, dict[str, int]]
    n_unlabelled: int
    n_groups_shared: int
    table_version: int
    excluded: dict[str, dict[str, int]] = field(default_factory=dict)
    """Classes the rare-class rule will leave out of every model trained on this split set."""
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    content_hash: str = ""
    """:func:`models.splits.split_content_hash` of the rows written."""


def read_labels(wh: Any, label_column: str, names: dict[int, str] | None = None) -> tuple[Labels, dict[str, str | None]]:
    """Labels of every galaxy for ``label_column`` and the duplicate group of each galaxy."""
    if not wh.exists("galaxies"):
        raise MissingInputError(f"table 'galaxies' does not exist in {wh.root}; ingest a source first")
    gal = wh.read("galaxies", columns=["galaxy_id", "label", "label_name", "extra_json", "duplicate_group"])
    ids = gal.column("galaxy_id").to_pylist()
    labels = resolve_labels(
        ids,
        column=label_column,
        label=gal.column("label").to_pylist(),
        label_name=gal.column("label_name").to_pylist(),
        extra_json=gal.column("extra_json").to_pylist(),
        names=names,
    )
    return labels, dict(zip(ids, gal.column("duplicate_group").to_pylist()))


def build_splits(
    wh: Any,
    *,
    label_column: str = "label",
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    names: dict[int, str] | None = None,
    run_id: str | None = None,
) -> SplitsOutcome:
    """Split the labelled galaxies (:func:`models.splits.make_splits`) and store them in ``splits``.

    The split set is named by its content's recipe, :func:`models.splits.split_set_name` of the label
    column, ``seed`` (the split seed) and ``fractions``, so split sets of other fractions are never
    overwritten. It is replaced in one commit (:meth:`warehouse.Warehouse.replace`): rows of galaxies that
    are no longer labelled go, so the stored set always equals the computed one; the groups are those of
    ``galaxies`` now (a model trained on an earlier version of the set is told apart by its
    ``split_hash``).

    Raises
    ------
    models.errors.LabelError
        Unusable label column (:class:`~models.errors.TooFewClassesError` for a single class).
    models.errors.SplitError
        The computed split leaks (never expected; checked before anything is written).
    """
    labels, groups = read_labels(wh, label_column, names)
    group = [groups.get(g) for g in labels.galaxy_ids]
    assign = make_splits(labels.galaxy_ids, labels.values, group, fractions=fractions, seed=seed)
    name = split_set_name(label_column, seed, fractions)
    problems = check_no_leak(assign.galaxy_ids, list(assign.split), group)
    if problems:
        raise SplitError(f"split {name} would leak: {'; '.join(problems[:5])}")
    name_of = labels.name_of
    rows = {
        "galaxy_id": labels.galaxy_ids,
        "split_name": [name] * len(labels.galaxy_ids),
        "split": [str(s) for s in assign.split],
        "label_column": [label_column] * len(labels.galaxy_ids),
        "label": labels.values.astype(np.int16).tolist(),
        "label_name": [name_of[int(v)] for v in labels.values],
        "seed": [seed] * len(labels.galaxy_ids),
        "duplicate_group": group,
    }
    import pyarrow as pa

    version = wh.replace("splits", pa.table(rows), where=f"split_name = {quote(name)}", run_id=run_id)
    cc = class_counts(list(assign.split), labels.values.tolist())
    rule = usable_classes(list(assign.split), labels.values.tolist())
    return SplitsOutcome(
        split_name=name,
        label_column=label_column,
        seed=seed,
        counts=assign.counts(),
        class_counts={s: {name_of[c]: n for c, n in sorted(v.items())} for s, v in cc.items()},
        n_unlabelled=labels.n_unlabelled,
        n_groups_shared=sum(1 for g in group if g),
        table_version=int(version),
        excluded={name_of[c]: per for c, per in rule.excluded.items()},
        fractions=tuple(float(x) for x in fractions),  # type: ignore[arg-type]
        content_hash=split_content_hash(rows["galaxy_id"], rows["split"], rows["label"]),
    )


@dataclass
class SplitData:
    """One split set read back for training: ids and class indices per split, the classes kept.

    ``excluded`` names the classes the rare-class rule (:func:`models.splits.usable_classes`) left out,
    with their galaxies per split; their galaxies are not in ``ids`` and ``y``.
    """

    split_name: str
    label_column: str
    table_version: int
    ids: dict[str, list[str]]
    y: dict[str, np.ndarray]
    classes: tuple[int, ...]
    names: tuple[str, ...]
    excluded: dict[str, dict[str, int]] = field(default_factory=dict)
    content_hash: str = ""
    """:func:`models.splits.split_content_hash` of every row of the set (excluded classes included)."""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def classes_json(self) -> str:
        return json.dumps([{"label": int(c), "name": n} for c, n in zip(self.classes, self.names)])

    def excluded_json(self) -> str:
        """The registry's ``excluded_classes_json``: ``[{"name", "train", "val", "test"}, ...]``."""
        return json.dumps([{"name": n, **per} for n, per in self.excluded.items()])


def _describe_excluded(excluded: dict[str, dict[str, int]], limit: int = 4) -> str:
    items = [f"{n!r} (" + ", ".join(f"{s} {c}" for s, c in per.items()) + ")" for n, per in excluded.items()]
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def load_split(wh: Any, split_name: str, version: int | None = None) -> SplitData:
    """Read a split set, check it does not leak under today's duplicate groups, and apply the rare-class rule.

    The leak check reads the groups from the current ``galaxies`` (:func:`stages.split_leaks.split_leaks`),
    not the copy stored with the split: a split set built before an ingest grouped one of its training
    galaxies with a test galaxy is refused, with the advice to rebuild it.

    A class without a galaxy in each of train, val and test is left out of the label set (its
    galaxies are dropped from every split) and named in :attr:`SplitData.excluded`.

    Raises
    ------
    models.errors.SplitError
        No such split set, or a galaxy or (current) duplicate group in two splits.
    models.errors.TooFewClassesError
        Fewer than two classes have a galaxy in every split; the message names the counts.
    """
    if not wh.exists("splits"):
        raise SplitError(f"table 'splits' does not exist in {wh.root}; materialize the splits asset first")
    t = wh.read("splits", version=version, where=f"split_name = {quote(split_name)}",
                columns=["galaxy_id", "split", "label_column", "label", "label_name", "duplicate_group"])
    if t.num_rows == 0:
        raise SplitError(f"no split set {split_name!r} in the splits table (materialize splits for it first)")
    d = t.to_pydict()
    problems, _ = split_leaks(wh, split_name, version=version)
    if problems:
        raise SplitError(
            f"split set {split_name!r} leaks under the current duplicate groups of 'galaxies' "
            f"({len(problems)} problem(s): {'; '.join(problems[:3])}); rebuild it (materialize splits, "
            "or build_splits) before training on it")
    name_of: dict[int, str] = {}
    for v, nm in zip(d["label"], d["label_name"]):
        name_of.setdefault(int(v), nm or str(v))
    rule = usable_classes(d["split"], d["label"])
    excluded = {name_of[c]: per for c, per in rule.excluded.items()}
    if len(rule.kept) < 2:
        kept = ", ".join(repr(name_of[c]) for c in rule.kept) or "none"
        raise TooFewClassesError(
            f"split set {split_name!r} ({t.num_rows} galaxies): fewer than two classes have a galaxy in each "
            f"of train, val and test (kept: {kept}; left out: {_describe_excluded(excluded)}); nothing to "
            "train: add galaxies or use another label column", excluded)
    classes = rule.kept
    index = {c: k for k, c in enumerate(classes)}
    ids: dict[str, list[str]] = {s: [] for s in SPLIT_NAMES}
    ys: dict[str, list[int]] = {s: [] for s in SPLIT_NAMES}
    for g, s, v in zip(d["galaxy_id"], d["split"], d["label"]):
        if int(v) in index:
            ids[s].append(g)
            ys[s].append(index[int(v)])
    table_version = int(version) if version is not None else int(wh.dataset("splits").version)
    return SplitData(split_name, d["label_column"][0], table_version, ids,
                     {s: np.asarray(ys[s], dtype=np.int64) for s in SPLIT_NAMES}, classes,
                     tuple(name_of[c] for c in classes), excluded,
                     split_content_hash(d["galaxy_id"], d["split"], d["label"]))


# ------------------------------------------------------------------------------------------ training
@dataclass
class TrainOutcome:
    """What one training run produced (all of it is also in the registry row and the artefact dir)."""

    name: str
    version: int
    kind: str
    label_column: str
    split_name: str
    classes: tuple[int, ...]
    names: tuple[str, ...]
    metrics: dict[str, Any]
    val_metrics: dict[str, Any]
    weights_origin: WeightsProvenance
    artefact_dir: str
    confusion_png: bytes
    train_seconds: float
    table_versions: dict[str, int]
    gate: Gate
    config: TrainConfig
    n: dict[str, int]
    excluded: dict[str, dict[str, int]] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    interval: tuple[float, float] = (float("nan"), float("nan"))
    """95% percentile bootstrap interval of the test balanced accuracy."""
    split_hash: str = ""
    split_version: int = -1
    conformal: dict[str, Any] = field(default_factory=dict)
    """Conformal sets on test per score, marginal and class-conditional (:func:`_conformalize`)."""
    calibration: CalibrationReport | None = None
    """Temperature scaling fitted on val, scores before and after (:func:`models.calibration.calibrate`)."""
    reliability_png: bytes = b""
    tracking: str = ""
    """Where the run was also logged (W&B, :mod:`models.tracking`), or why that failed; empty when off."""

    @property
    def passed_gate(self) -> bool:
        """Whether the model beat the same-run baselines on the test split (:func:`models.baselines.gate`)."""
        return bool(self.gate.passed)


def _subsample(ids: list[str], y: np.ndarray, n: int, seed: int) -> tuple[list[str], np.ndarray]:
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


def _latest_probe(wh: Any, cfg: TrainConfig, split: SplitData) -> tuple[dict[str, Any], Path] | None:
    for row in reversed(list_models(wh)):
        if row["name"] != "dinov2_probe" or row.get("split_hash") != split.content_hash:
            continue  # only a probe fitted on this very split set (by content, not by name)
        if json.loads(row["config_json"]).get("encoder") != cfg.encoder or row["classes_json"] != split.classes_json():
            continue
        path = Path(row["artefact_path"]) / "probe.npz"
        if path.is_file():
            return row, path
    return None


def _init_head_from_probe(wh: Any, model: Any, origin: WeightsProvenance, cfg: TrainConfig,
                          split: SplitData) -> str:
    """Copy the latest matching probe into the fine-tune head, if it was fitted on the same weights."""
    from models.probe import LinearProbe

    probe = _latest_probe(wh, cfg, split)
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


Used = dict[str, tuple[list[str], np.ndarray]]
"""Per split, the galaxy ids a run used and their class indices."""


def _train_images(wh: Any, name: str, cfg: TrainConfig, split: SplitData, tmp: Path, log: LogFn,
                  notes: list[str]) -> tuple[dict[str, np.ndarray], Used, WeightsProvenance, dict[str, Any]]:
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
    if name == "dinov2_finetune":
        params = model.param_groups(cfg.lr, cfg.weight_decay, cfg.layer_decay, cfg.head_lr_scale)
        notes.append(_init_head_from_probe(wh, model, origin, cfg, split) if cfg.init_from_probe
                     else "head initialised at zero (init_from_probe is off)")
        log(f"{name}: {notes[-1]}")
    workers = auto_num_workers(device) if cfg.num_workers < 0 else cfg.num_workers
    train_ids, train_y = _subsample(split.ids["train"], split.y["train"], cfg.max_train, cfg.seed)
    ds = {s: GalaxyImageDataset(wh, ids, y, img_size=cfg.img_size)
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
    if name == "dinov2_finetune":
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
    used = {"train": (train_ids, train_y), **{s: (split.ids[s], ys[s]) for s in ("val", "test")}}
    return probs, used, origin, info


def _train_probe(wh: Any, cfg: TrainConfig, split: SplitData, tmp: Path, log: LogFn,
                 notes: list[str]) -> tuple[dict[str, np.ndarray], Used, WeightsProvenance, dict[str, Any]]:
    from models.data import read_embeddings
    from models.probe import fit_probe

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
            ids, y = _subsample(ids, y, cfg.max_train, cfg.seed)
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


def pixel_stamps(wh: Any, ids: list[str], batch: int = 256) -> np.ndarray:
    """The ``(N, 3, 16, 16)`` uint8 stamps of ``ids`` that :func:`models.baselines.pixel_features` reads.

    The gate's pixel baseline and the representation analysis's pixel baseline both read them.
    """
    from models.data import GalaxyImageDataset

    ds = GalaxyImageDataset(wh, ids, img_size=PIXEL_STAMP, cache_mb=0)
    out = [np.stack([x.numpy() for x, _ in ds.__getitems__(list(range(i, min(i + batch, len(ids)))))])
           for i in range(0, len(ids), batch)]
    return np.concatenate(out) if out else np.zeros((0, 3, PIXEL_STAMP, PIXEL_STAMP), np.uint8)


def _gate(wh: Any, cfg: TrainConfig, split: SplitData, used: Used, test_pred: np.ndarray, log: LogFn) -> Gate:
    """Measure the baselines on the run's own galaxies and gate the model against them on test.

    The pixel baseline trains on the same training galaxies as the model (after ``max_train``) and
    chooses its ``C`` on the same validation galaxies.
    """
    from models.probe import DEFAULT_CS, fit_probe

    t0 = time.perf_counter()
    feats = {s: pixel_features(pixel_stamps(wh, used[s][0])) for s in SPLIT_NAMES}
    probe = fit_probe(feats["train"], used["train"][1], feats["val"], used["val"][1],
                      num_classes=split.num_classes, Cs=DEFAULT_CS[::2], seed=cfg.seed)
    y_test = used["test"][1]
    preds = {"majority": majority_predictions(used["train"][1], len(y_test)),
             "pixels": probe.predict_proba(feats["test"]).argmax(axis=1)}
    out = gate(y_test, test_pred, preds, confidence=cfg.gate_confidence, n_boot=cfg.gate_resamples,
               seed=cfg.seed)
    log(f"baselines on the {out.n} test galaxies ({time.perf_counter() - t0:.1f} s): "
        + ", ".join(f"{k} {v['balanced_accuracy']:.3f}" for k, v in out.baselines.items())
        + f"; gate {'passed' if out.passed else 'FAILED'}: {out.reason}")
    return out


def _conformalize(conf_probs: np.ndarray, y_conf: np.ndarray, test_probs: np.ndarray, y_test: np.ndarray,
                  names: tuple[str, ...], cfg: TrainConfig, log: LogFn) -> tuple[dict[str, Conformalizer], dict[str, Any]]:
    """Fit a :class:`models.conformal.Conformalizer` per score on the conformalization half; report on test."""
    fitted: dict[str, Conformalizer] = {}
    report: dict[str, Any] = {"alpha": cfg.conformal_alpha, "n_conformalize": len(y_conf),
                              "conformalize_split": "val, conformalization half (the other half fitted the "
                                                    "temperature)", "scores": {}}
    for score in SCORES:
        c = Conformalizer.fit(conf_probs, y_conf, alpha=cfg.conformal_alpha, score=score, names=names)
        fitted[score] = c
        marginal, classwise = c.marginal_sets(test_probs), c.class_sets(test_probs)
        report["scores"][score] = {
            "marginal": set_report(marginal, y_test, names) if marginal is not None else None,
            "class_conditional": set_report(classwise, y_test, names) if classwise is not None else None,
            "flags": c.flags}
    lac = report["scores"]["lac"]
    log(f"conformal (alpha {cfg.conformal_alpha:g}, {len(y_conf)} conformalization galaxies), test coverage LAC "
        f"marginal {lac['marginal']['coverage']:.3f} (mean size {lac['marginal']['mean_size']:.2f}), "
        f"class-conditional {lac['class_conditional']['coverage']:.3f} "
        f"(mean size {lac['class_conditional']['mean_size']:.2f})"
        + (f"; {len(lac['flags'])} flag(s): {lac['flags'][0]}" if lac["flags"] else ""))
    return fitted, report


def train_model(
    wh: Any,
    name: str,
    config: TrainConfig | None = None,
    *,
    log: LogFn | None = None,
    run_id: str | None = None,
    ensure_splits: bool = True,
) -> TrainOutcome:
    """Train one registered model on a split set and record it in the registry.

    Parameters
    ----------
    wh : warehouse.Warehouse
    name : str
        A key of :data:`models.registry.MODELS`.
    config : TrainConfig, optional
        Default: the model's ``demo`` preset.
    log : callable, optional
        ``log(message)``.
    run_id : str, optional
        Stored with the written rows (the Dagster run id).
    ensure_splits : bool
        Build the split set of the config (``config.split_name``: label column, ``split_seed`` and
        ``split_fractions``) when it does not exist yet.

    Returns
    -------
    TrainOutcome
        With its gate (:func:`models.baselines.gate`): the test balanced accuracy against the
        majority-class and pixel baselines measured on the same galaxies in this run. The registry row
        records it (``gate_passed``, ``gate_json``); :func:`models.predict.predict_all` writes
        predictions only for versions that passed.

    Raises
    ------
    models.errors.LabelError, SplitError, MissingInputError, WeightsUnavailableError
        Unusable inputs; nothing is written to the warehouse then.
    models.errors.TooFewClassesError
        Fewer than two classes left after the rare-class rule (a ``LabelError``): nothing to train.
    """
    from models.config import make_config

    spec = get_spec(name)
    cfg = config or make_config(name)
    if spec.name.startswith("dinov2") or spec.kind == "fusion":
        cfg = replace(cfg, encoder=resolve_encoder(wh, cfg.encoder, backbone=spec.kind == "images"))
    if spec.kind == "fusion":
        from models.fusion_data import check_frozen_encoder

        check_frozen_encoder(cfg.encoder)
    log = log or (lambda message: None)
    from models.tracking import require_wandb, wandb_project

    tracking = wandb_project(cfg.wandb_project)
    require_wandb(tracking)  # configured but not installed: stop before anything is trained or written
    split_name = cfg.split_name
    have = wh.exists("splits") and wh.count("splits", where=f"split_name = {quote(split_name)}") > 0
    if not have:
        if not ensure_splits:
            raise SplitError(f"no split set {split_name!r}; materialize the splits asset for label "
                             f"{cfg.label_column!r}, seed {cfg.split_seed} and fractions {cfg.split_fractions} first")
        out = build_splits(wh, label_column=cfg.label_column, seed=cfg.split_seed, fractions=cfg.split_fractions,
                           run_id=run_id)
        log(f"built split set {split_name}: {out.counts}")
    versions = wh.versions()
    split = load_split(wh, split_name, version=versions["splits"])
    read_tables = ["galaxies", "splits"] + {
        "images": ["images"], "embeddings": [embedding_table(cfg.encoder)],
        "fusion": [embedding_table(cfg.encoder), "morphometrics", "photometry"]}[spec.kind]
    log(f"training {name} on {split_name} ({split.num_classes} classes, "
        f"{', '.join(f'{s} {len(split.ids[s])}' for s in SPLIT_NAMES)}), preset {cfg.preset}")
    notes: list[str] = []
    if split.excluded:
        notes.append(f"left out of the label set (too few galaxies for every split): "
                     f"{_describe_excluded(split.excluded, limit=len(split.excluded))}")
        log(f"{name}: {notes[-1]}")

    models_dir = Path(wh.models_dir) / name
    tmp = models_dir / f".tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        if spec.kind == "images":
            probs, used, origin, info = _train_images(wh, name, cfg, split, tmp, log, notes)
        elif spec.kind == "fusion":
            from stages.fusion import train_fusion

            probs, used, origin, info = train_fusion(wh, cfg, split, tmp, log, notes, _subsample)
        else:
            probs, used, origin, info = _train_probe(wh, cfg, split, tmp, log, notes)
        seconds = time.perf_counter() - t0
        table_versions = {t: int(versions[t]) for t in read_tables if t in versions}
        test = classification_metrics(used["test"][1], probs["test"].argmax(axis=1), split.names)
        val = classification_metrics(used["val"][1], probs["val"].argmax(axis=1), split.names)
        verdict = _gate(wh, cfg, split, used, probs["test"].argmax(axis=1), log)
        _, ci_low, ci_high = balanced_accuracy_interval(used["test"][1], probs["test"].argmax(axis=1),
                                                        n_boot=cfg.gate_resamples, seed=cfg.seed)
        test["balanced_accuracy_ci95"] = [ci_low, ci_high]
        conf_half = val_halves(used["val"][0], used["val"][1],
                               [current_groups(wh, used["val"][0]).get(g) for g in used["val"][0]], seed=cfg.split_seed)
        y_val = used["val"][1]
        cal = calibrate(probs["val"][~conf_half], y_val[~conf_half], probs["test"], used["test"][1])
        conformal, conformal_metrics = _conformalize(
            apply_temperature(log_probs(probs["val"][conf_half]), cal.temperature), y_val[conf_half],
            apply_temperature(log_probs(probs["test"]), cal.temperature), used["test"][1], split.names, cfg, log)
        log(f"{name}: temperature {cal.temperature:.3f} (fitted on val by NLL); test ECE "
            f"{cal.test['before']['ece']:.4f} -> {cal.test['after']['ece']:.4f}, NLL {cal.test['before']['nll']:.4f} "
            f"-> {cal.test['after']['nll']:.4f}" + ("; it RAISED the validation ECE" if cal.val_ece_raised else ""))
        version = next_version(wh, name)
        title = f"{name} v{version} test (balanced acc {test['balanced_accuracy']:.3f})"
        png = confusion_png(test["confusion"], split.names, title=title)
        rel_png = reliability_png(
            [probs["test"], apply_temperature(log_probs(probs["test"]), cal.temperature)], used["test"][1],
            ["before", f"after, T = {cal.temperature:.2f}"], n_bins=cal.n_bins,
            title=f"{name} v{version} test reliability ({len(used['test'][1])} galaxies)")
        final = artefact_dir(wh, name, version)
        if final.exists():
            shutil.rmtree(final)
        if "checkpoint" in info:
            info["checkpoint"] = str(final / "model.pt")
        metrics = {"test": test, "val": val, "fit": info, "train_seconds": seconds, "gate": verdict.as_dict(),
                   "excluded_classes": split.excluded, "weights_origin": str(origin), "notes": notes,
                   "calibration": cal.as_dict(), "conformal": conformal_metrics}
        (tmp / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
        (tmp / "confusion.png").write_bytes(png)
        (tmp / "reliability.png").write_bytes(rel_png)
        joblib.dump(conformal, tmp / "conformal.joblib")
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    row = {
        "name": name,
        "version": version,
        "kind": spec.kind,
        "label_column": cfg.label_column,
        "split_name": split_name,
        "classes_json": split.classes_json(),
        "config_json": cfg.to_json(),
        "seed": cfg.seed,
        "split_seed": cfg.split_seed,
        "split_version": split.table_version,
        "split_hash": split.content_hash,
        "metrics_json": json.dumps({"test_balanced_accuracy": test["balanced_accuracy"], "test": test, "val": val,
                                    "fit": info, "notes": notes, "calibration": cal.as_dict(),
                                    "conformal": conformal_metrics}, default=float),
        "test_balanced_accuracy": float(test["balanced_accuracy"]),
        "test_balanced_accuracy_low": ci_low,
        "test_balanced_accuracy_high": ci_high,
        "gate_passed": verdict.passed,
        "gate_json": json.dumps(verdict.as_dict(), default=float),
        "excluded_classes_json": split.excluded_json(),
        "artefact_path": str(final),
        "table_versions_json": json.dumps(table_versions, sort_keys=True),
        "weights_origin": str(origin),
        "train_seconds": float(seconds),
    }
    record_model(wh, row, run_id=run_id)
    tracked = ""
    if tracking:
        from models.tracking import log_training_run

        try:
            where = log_training_run(tracking, name=name, version=version, config=asdict(cfg), metrics=metrics,
                                     root=wh.local_root)
            tracked = f"W&B project {tracking}: {where}"
        except Exception as exc:  # the registry row is written: tracking failing loses no result, but is said
            tracked = f"W&B logging FAILED ({type(exc).__name__}: {exc}); the registry row is written"
        log(f"{name} v{version}: {tracked}")
    log(f"{name} v{version}: test balanced accuracy {test['balanced_accuracy']:.4f} "
        f"(95% bootstrap CI {ci_low:.3f}-{ci_high:.3f}) on split set {split_name} #{split.content_hash} "
        f"(gate {'passed' if verdict.passed else 'FAILED'}), accuracy {test['accuracy']:.4f}, "
        f"macro F1 {test['macro_f1']:.4f}; weights: {origin}; {seconds:.1f} s")
    return TrainOutcome(
        name=name, version=version, kind=spec.kind, label_column=cfg.label_column, split_name=split_name,
        classes=split.classes, names=split.names, metrics=test, val_metrics=val, weights_origin=origin,
        artefact_dir=str(final), confusion_png=png, train_seconds=seconds, table_versions=table_versions,
        gate=verdict, config=cfg, n={s: len(split.ids[s]) for s in SPLIT_NAMES}, excluded=split.excluded,
        fit=info, notes=notes, interval=(ci_low, ci_high), split_hash=split.content_hash,
        split_version=split.table_version, calibration=cal, reliability_png=rel_png, conformal=conformal_metrics,
        tracking=tracked,
    )


def config_from_registry(wh: Any, name: str, version: int | None = None) -> TrainConfig:
    """The config a registered model version was trained with."""
    return TrainConfig.from_json(get_model(wh, name, version)["config_json"])


def retrain(wh: Any, name: str, version: int, **kwargs: Any) -> TrainOutcome:
    """Train ``name`` again with the config of ``version`` (same seeds: same split, same metrics on the CPU)."""
    return train_model(wh, name, replace(config_from_registry(wh, name, version)), **kwargs)
