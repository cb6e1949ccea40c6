"""How every training run ends: ``finish_run`` (classifiers, fine-tune, probe, fusion) and ``commit_run`` (all, U-Net too).

:func:`finish_run` takes what a kind's fitting step returned (:data:`stages.trainers.FitOutput`) and does,
once for every classifier kind: test and validation metrics, the gate against the same-run baselines
(:func:`models.baselines.gate`), the bootstrap CI of the test balanced accuracy, temperature scaling on one
half of val, conformal sets fitted on the other half, the confusion and reliability plots, then
:func:`commit_run`: the atomic artefact write (a temporary directory renamed to ``<models>/<name>/v<N>``)
and the registry row as a typed :class:`RegistryRow`. The U-Net (:func:`stages.segmentation.train_unet`)
has its own gate (IoU against Otsu) and commits through the same :func:`commit_run`.
No Dagster, no argparse.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from features.parallel import step_cores
from features.weights import WeightsProvenance
from models.baselines import (
    PIXEL_STAMP,
    Gate,
    balanced_accuracy_interval,
    gate,
    majority_predictions,
    pixel_features,
)
from models.calibration import CalibrationReport, apply_temperature, calibrate, log_probs, reliability_png
from models.config import RunConfig
from models.conformal import SCORES, Conformalizer, set_report, val_halves
from models.metrics import classification_metrics, confusion_png
from models.probe import DEFAULT_CS
from models.splits import SPLIT_NAMES
from stages.files import atomic_write
from stages.split_leaks import current_groups
from stages.splits import SplitData
from stages.trainers import FitOutput, Used
from stages.versions import artefact_dir, next_version, record_model

__all__ = ["PIXEL_CS", "RegistryRow", "TrainOutcome", "commit_run", "finish_run", "pixel_baseline",
           "pixel_baseline_beside", "pixel_stamps"]

LogFn = Callable[[str], None]


@dataclass(frozen=True)
class RegistryRow:
    """One row of the model registry (``models`` table, :mod:`warehouse.schemas.training`), typed.

    Every trained model - classifier, probe, fusion, U-Net - is recorded through this class, so the
    row's keys and types live in one place; :meth:`as_row` is what :func:`stages.versions.record_model`
    stores.
    """

    name: str
    version: int
    kind: str
    label_column: str
    split_name: str
    classes_json: str
    config_json: str
    seed: int
    split_seed: int | None
    split_version: int | None
    split_hash: str
    metrics_json: str
    test_balanced_accuracy: float | None
    test_balanced_accuracy_low: float | None
    test_balanced_accuracy_high: float | None
    gate_passed: bool
    gate_json: str
    excluded_classes_json: str
    artefact_path: str
    table_versions_json: str
    weights_origin: str
    train_seconds: float

    def as_row(self) -> dict[str, Any]:
        """The row as the registry table stores it."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def commit_run(wh: Any, tmp: Path, make_row: Callable[[int, Path], RegistryRow], *,
               write: Callable[[Path, int, Path], None] | None = None, run_id: str | None = None) -> RegistryRow:
    """Give the run its version, move its artefacts into place atomically and record its registry row.

    Parameters
    ----------
    tmp : path
        The run's temporary artefact directory (already holding the weights); removed on any failure.
    make_row : callable
        ``make_row(version, final_dir) -> RegistryRow``.
    write : callable, optional
        ``write(tmp, version, final_dir)`` writes the files that need the version (plots, metrics).
    """
    row: RegistryRow | None = None
    try:
        version = next_version(wh, tmp.parent.name)
        final = artefact_dir(wh, tmp.parent.name, version)
        if write is not None:
            write(tmp, version, final)
        row = make_row(version, final)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    record_model(wh, row.as_row(), run_id=run_id)
    return row


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
    config: RunConfig
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


def pixel_stamps(wh: Any, ids: list[str], batch: int = 256) -> np.ndarray:
    """The ``(N, 3, 16, 16)`` uint8 stamps of ``ids`` that :func:`models.baselines.pixel_features` reads.

    The gate's pixel baseline and the representation analysis's pixel baseline both read them.
    """
    from models.data import GalaxyImageDataset

    ds = GalaxyImageDataset(wh, ids, img_size=PIXEL_STAMP, cache_mb=0, threads=step_cores())
    out = [np.stack([x.numpy() for x, _ in ds.__getitems__(list(range(i, min(i + batch, len(ids)))))])
           for i in range(0, len(ids), batch)]
    return np.concatenate(out) if out else np.zeros((0, 3, PIXEL_STAMP, PIXEL_STAMP), np.uint8)


PIXEL_CS = tuple(DEFAULT_CS[::2])
"""The gate's pixel probe chooses its ``C`` among these (every other value of the probe's grid)."""


def _pixel_key(wh: Any, used: Used, num_classes: int, seed: int) -> str:
    """What the gate's pixel baseline depends on: the galaxies and labels of each split, the images
    table's version, the stamp size, the ``C`` grid, the classes and the seed (SHA-256)."""
    h = hashlib.sha256()
    for s in SPLIT_NAMES:
        ids, y = used[s]
        h.update(f"{s}:{len(ids)}\0".encode() + "\0".join(ids).encode())
        h.update(np.asarray(y, dtype=np.int64).tobytes())
    meta = {"images": wh.dataset("images").version, "stamp": PIXEL_STAMP, "Cs": PIXEL_CS, "k": num_classes,
            "seed": seed}
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()


def pixel_baseline(wh: Any, used: Used, num_classes: int, seed: int) -> tuple[np.ndarray, bool]:
    """The pixel baseline's test predictions: a probe (:func:`models.probe.fit_probe`) on 16 px stamps
    (:func:`models.baselines.pixel_features`) of the run's own training galaxies, ``C`` chosen on its
    validation galaxies.

    The predictions are kept under ``<root>/cache/gate/`` by :func:`_pixel_key`, so models trained on
    the same galaxies (the probe and fusion on the whole train split; EfficientNet and the fine-tune on
    the same budget sample) fit it once: it is deterministic, and at Galaxy10's size it is ~55 s.
    A cache file that cannot be read is refitted and rewritten. Returns the predictions and whether
    they came from the cache.
    """
    from models.probe import fit_probe

    path = Path(wh.cache_dir) / "gate" / f"pixels-{_pixel_key(wh, used, num_classes, seed)}.npy"
    n_test = len(used["test"][0])
    try:
        pred = np.load(path, allow_pickle=False)
        if pred.shape == (n_test,):
            return pred, True
    except (OSError, ValueError):
        pass
    feats = {s: pixel_features(pixel_stamps(wh, used[s][0])) for s in SPLIT_NAMES}
    probe = fit_probe(feats["train"], used["train"][1], feats["val"], used["val"][1],
                      num_classes=num_classes, Cs=PIXEL_CS, seed=seed)
    pred = probe.predict_proba(feats["test"]).argmax(axis=1).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)

    def save(tmp: Path) -> None:
        with tmp.open("wb") as fh:  # a file object: np.save would add ".npy" to a name without it
            np.save(fh, pred, allow_pickle=False)

    atomic_write(path, save)
    return pred, False


def _pixel_baseline_at(root: str, local_root: str, used: Used, num_classes: int, seed: int) -> bool:
    """:func:`pixel_baseline` in a worker process, on the warehouse at ``root``; whether it was cached."""
    from warehouse import Warehouse

    return pixel_baseline(Warehouse(root, Path(local_root)), used, num_classes, seed)[1]


@contextmanager
def pixel_baseline_beside(wh: Any, used: Used, num_classes: int, seed: int, log: LogFn) -> Iterator[None]:
    """Fit the gate's pixel baseline (:func:`pixel_baseline`, into its cache) in a second process while
    the ``with`` block fits a single-threaded model, so the gate later finds it cached.

    Only from :data:`features.parallel.POOL_MIN_ROWS` galaxies and with a second
    core (:func:`features.parallel.step_cores`): below, a process's start costs more than it saves, and
    the block runs alone as before. At Galaxy10's size the probe's ``C`` chain (one thread, ~100 s) left
    the second core idle while the pixel probe waited its turn (~55 s) in the gate. The result is the
    same either way (the cache is keyed by everything the baseline depends on); if the side process
    fails, the gate fits the baseline itself and reports any error there.
    """
    import features.parallel as parallel  # POOL_MIN_ROWS read at call time

    if sum(len(used[s][0]) for s in SPLIT_NAMES) < parallel.POOL_MIN_ROWS or parallel.step_cores() < 2:
        yield
        return
    with parallel.process_pool(1) as side:
        ahead = side.submit(_pixel_baseline_at, str(wh.root), str(wh.local_root), used, num_classes, seed)
        try:
            yield
        finally:
            try:
                ahead.result()
            except Exception as exc:  # the gate fits it again and raises there if it must
                log(f"the gate's pixel baseline beside the fit failed ({type(exc).__name__}: {exc}); "
                    "the gate fits it itself")


def _gate(wh: Any, cfg: RunConfig, split: SplitData, used: Used, test_pred: np.ndarray, log: LogFn) -> Gate:
    """Measure the baselines on the run's own galaxies and gate the model against them on test.

    The pixel baseline trains on the same training galaxies as the model (after ``max_train``) and
    chooses its ``C`` on the same validation galaxies (:func:`pixel_baseline`).
    """
    t0 = time.perf_counter()
    pixels, cached = pixel_baseline(wh, used, split.num_classes, cfg.seed)
    y_test = used["test"][1]
    preds = {"majority": majority_predictions(used["train"][1], len(y_test)), "pixels": pixels}
    out = gate(y_test, test_pred, preds, confidence=cfg.gate_confidence, n_boot=cfg.gate_resamples,
               seed=cfg.seed)
    log(f"baselines on the {out.n} test galaxies ({time.perf_counter() - t0:.1f} s"
        f"{', pixel probe from the cache' if cached else ''}): "
        + ", ".join(f"{k} {v['balanced_accuracy']:.3f}" for k, v in out.baselines.items())
        + f"; gate {'passed' if out.passed else 'FAILED'}: {out.reason}")
    return out


def _conformalize(conf_probs: np.ndarray, y_conf: np.ndarray, test_probs: np.ndarray, y_test: np.ndarray,
                  names: tuple[str, ...], cfg: RunConfig, log: LogFn) -> tuple[dict[str, Conformalizer], dict[str, Any]]:
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


@dataclass
class _Verdict:
    """Test and val metrics, gate, CI, temperature and conformal sets of one classifier run."""

    test: dict[str, Any]
    val: dict[str, Any]
    gate: Gate
    ci: tuple[float, float]
    calibration: CalibrationReport
    conformal: dict[str, Conformalizer]
    conformal_metrics: dict[str, Any]


def _verdict(wh: Any, name: str, cfg: RunConfig, split: SplitData, probs: dict[str, np.ndarray], used: Used,
             log: LogFn) -> _Verdict:
    y_test, y_val = used["test"][1], used["val"][1]
    test = classification_metrics(y_test, probs["test"].argmax(axis=1), split.names)
    val = classification_metrics(y_val, probs["val"].argmax(axis=1), split.names)
    verdict = _gate(wh, cfg, split, used, probs["test"].argmax(axis=1), log)
    _, ci_low, ci_high = balanced_accuracy_interval(y_test, probs["test"].argmax(axis=1),
                                                    n_boot=cfg.gate_resamples, seed=cfg.seed)
    test["balanced_accuracy_ci95"] = [ci_low, ci_high]
    conf_half = val_halves(used["val"][0], y_val, [current_groups(wh, used["val"][0]).get(g) for g in used["val"][0]],
                           seed=cfg.split_seed)
    cal = calibrate(probs["val"][~conf_half], y_val[~conf_half], probs["test"], y_test)
    conformal, conformal_metrics = _conformalize(
        apply_temperature(log_probs(probs["val"][conf_half]), cal.temperature), y_val[conf_half],
        apply_temperature(log_probs(probs["test"]), cal.temperature), y_test, split.names, cfg, log)
    log(f"{name}: temperature {cal.temperature:.3f} (fitted on val by NLL); test ECE "
        f"{cal.test['before']['ece']:.4f} -> {cal.test['after']['ece']:.4f}, NLL {cal.test['before']['nll']:.4f} "
        f"-> {cal.test['after']['nll']:.4f}" + ("; it RAISED the validation ECE" if cal.val_ece_raised else ""))
    return _Verdict(test, val, verdict, (ci_low, ci_high), cal, conformal, conformal_metrics)


def _track(tracking: str, name: str, version: int, cfg: RunConfig, metrics: dict[str, Any], wh: Any,
           log: LogFn) -> str:
    """Log the registered run to W&B when configured; a failure is said, never raised (the row is written)."""
    if not tracking:
        return ""
    from models.tracking import log_training_run

    try:
        where = log_training_run(tracking, name=name, version=version, config=asdict(cfg), metrics=metrics,
                                 root=wh.local_root)
        tracked = f"W&B project {tracking}: {where}"
    except Exception as exc:  # the registry row is written: tracking failing loses no result, but is said
        tracked = f"W&B logging FAILED ({type(exc).__name__}: {exc}); the registry row is written"
    log(f"{name} v{version}: {tracked}")
    return tracked


def finish_run(wh: Any, name: str, kind: str, cfg: RunConfig, split: SplitData, fitted: FitOutput, tmp: Path, *,
               seconds: float, notes: list[str], table_versions: dict[str, int], tracking: str = "",
               log: LogFn | None = None, run_id: str | None = None) -> TrainOutcome:
    """Gate, CI, calibration, conformal sets, plots, the atomic artefact write and the registry row of a classifier.

    ``fitted`` is what the kind's fitting step returned (:data:`stages.trainers.FitOutput`); ``tmp`` its
    temporary artefact directory under ``<models>/<name>/``, removed on failure.
    """
    log = log or (lambda message: None)
    probs, used, origin, info = fitted
    try:
        v = _verdict(wh, name, cfg, split, probs, used, log)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    y_test = used["test"][1]
    metrics = {"test": v.test, "val": v.val, "fit": info, "train_seconds": seconds, "gate": v.gate.as_dict(),
               "excluded_classes": split.excluded, "weights_origin": str(origin), "notes": notes,
               "calibration": v.calibration.as_dict(), "conformal": v.conformal_metrics}
    plots: dict[str, bytes] = {}

    def write(directory: Path, version: int, final: Path) -> None:
        title = f"{name} v{version} test (balanced acc {v.test['balanced_accuracy']:.3f})"
        plots["confusion"] = confusion_png(v.test["confusion"], split.names, title=title)
        plots["reliability"] = reliability_png(
            [probs["test"], apply_temperature(log_probs(probs["test"]), v.calibration.temperature)], y_test,
            ["before", f"after, T = {v.calibration.temperature:.2f}"], n_bins=v.calibration.n_bins,
            title=f"{name} v{version} test reliability ({len(y_test)} galaxies)")
        if "checkpoint" in info:
            info["checkpoint"] = str(final / "model.pt")
        (directory / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        (directory / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
        (directory / "confusion.png").write_bytes(plots["confusion"])
        (directory / "reliability.png").write_bytes(plots["reliability"])
        joblib.dump(v.conformal, directory / "conformal.joblib")

    def make_row(version: int, final: Path) -> RegistryRow:
        return RegistryRow(
            name=name, version=version, kind=kind, label_column=cfg.label_column, split_name=split.split_name,
            classes_json=split.classes_json(), config_json=cfg.to_json(), seed=cfg.seed, split_seed=cfg.split_seed,
            split_version=split.table_version, split_hash=split.content_hash,
            metrics_json=json.dumps({"test_balanced_accuracy": v.test["balanced_accuracy"], "test": v.test,
                                     "val": v.val, "fit": info, "notes": notes,
                                     "calibration": v.calibration.as_dict(), "conformal": v.conformal_metrics},
                                    default=float),
            test_balanced_accuracy=float(v.test["balanced_accuracy"]), test_balanced_accuracy_low=v.ci[0],
            test_balanced_accuracy_high=v.ci[1], gate_passed=v.gate.passed,
            gate_json=json.dumps(v.gate.as_dict(), default=float), excluded_classes_json=split.excluded_json(),
            artefact_path=str(final), table_versions_json=json.dumps(table_versions, sort_keys=True),
            weights_origin=str(origin), train_seconds=float(seconds))

    row = commit_run(wh, tmp, make_row, write=write, run_id=run_id)
    tracked = _track(tracking, name, row.version, cfg, metrics, wh, log)
    test = v.test
    log(f"{name} v{row.version}: test balanced accuracy {test['balanced_accuracy']:.4f} "
        f"(95% bootstrap CI {v.ci[0]:.3f}-{v.ci[1]:.3f}) on split set {split.split_name} #{split.content_hash} "
        f"(gate {'passed' if v.gate.passed else 'FAILED'}), accuracy {test['accuracy']:.4f}, "
        f"macro F1 {test['macro_f1']:.4f}; weights: {origin}; {seconds:.1f} s")
    return TrainOutcome(
        name=name, version=row.version, kind=kind, label_column=cfg.label_column, split_name=split.split_name,
        classes=split.classes, names=split.names, metrics=test, val_metrics=v.val, weights_origin=origin,
        artefact_dir=row.artefact_path, confusion_png=plots["confusion"], train_seconds=seconds,
        table_versions=table_versions, gate=v.gate, config=cfg, n={s: len(split.ids[s]) for s in SPLIT_NAMES},
        excluded=split.excluded, fit=info, notes=notes, interval=v.ci, split_hash=split.content_hash,
        split_version=split.table_version, calibration=v.calibration, reliability_png=plots["reliability"],
        conformal=v.conformal_metrics, tracking=tracked)
