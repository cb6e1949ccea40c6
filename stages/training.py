"""The training stage: one training run of a registered model over a warehouse, and retraining one.

What the Dagster training assets and ``astrovision train`` call. :func:`train_model` resolves the config,
makes sure the split set exists (:mod:`stages.splits`), runs the kind's fitting step
(:mod:`stages.trainers`, :mod:`stages.fusion`) into a temporary artefact directory and hands the result to
:func:`stages.finish.finish_run` (gate, CI, calibration, conformal, atomic write, typed registry row).
No Dagster and no argparse here. The split and finish names stay importable from here.
"""

from __future__ import annotations

import importlib
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from models.config import FinetuneConfig, RunConfig, config_from_json
from models.errors import SplitError
from models.registry import ModelSpec, get_spec
from models.splits import SPLIT_NAMES
from stages.finish import RegistryRow, TrainOutcome, finish_run, pixel_stamps
from stages.fusion import train_fusion
from stages.splits import SplitData, SplitsOutcome, build_splits, describe_excluded, load_split, read_labels
from stages.trainers import FitStep, finetune_inputs, train_images, train_probe
from stages.versions import get_model
from warehouse.schemas.embeddings import embedding_table
from warehouse.sqltext import quote

__all__ = [
    "AUTO_ENCODERS",
    "FIT_STEPS",
    "RegistryRow",
    "SplitData",
    "SplitsOutcome",
    "TrainOutcome",
    "auto_order",
    "build_splits",
    "config_from_registry",
    "fit_step",
    "load_split",
    "pixel_stamps",
    "read_labels",
    "resolve_encoder",
    "retrain",
    "train_model",
]

LogFn = Callable[[str], None]
FIT_STEPS: dict[str, FitStep] = {"images": train_images, "embeddings": train_probe, "fusion": train_fusion}
"""Each registry kind's fitting step; :func:`stages.finish.finish_run` does the rest for all of them."""


def fit_step(spec: ModelSpec) -> FitStep:
    """The fitting step of a registered model: its own ``fit_step`` (``"module:function"``) or its kind's."""
    if spec.fit_step:
        module, _, function = spec.fit_step.partition(":")
        return getattr(importlib.import_module(module), function)
    try:
        return FIT_STEPS[spec.kind]
    except KeyError:
        raise ValueError(f"model {spec.name!r} is of kind {spec.kind!r}, which has no fitting step; "
                         f"give its registry entry a fit_step or use one of {', '.join(FIT_STEPS)}") from None

AUTO_ENCODERS: tuple[str, ...] = ("zoobot_convnext_nano", "dinov2_vits14", "dinov2_vitb14", "ssl_resnet18",
                                   "random_vits14")
"""Preference order of ``encoder="auto"`` for the probe, the fine-tune and fusion (the head of
:func:`auto_order`): Zoobot's default first, DINOv2, the warehouse's own, the random baseline last."""


def auto_order(wh: Any) -> list[str]:
    """The encoders ``auto`` takes, best first, among those whose embeddings table exists.

    In-domain pretrained encoders (every registered Zoobot one, ``zoobot_convnext_nano`` first), then
    any other Hub or timm encoder a user embedded (``hf_*``, ``timm_*`` tables), then DINOv2, the
    warehouse's own self-supervised encoder, and the random baseline.
    """
    from features.embeddings import ENCODERS
    from warehouse.schemas.embeddings import encoder_of_table

    present = {encoder_of_table(t) for t in wh.tables()} - {None}
    in_domain = [n for n, s in ENCODERS.items() if s.in_domain and n != AUTO_ENCODERS[0]]
    hub = sorted(n for n in present if n not in ENCODERS and n.startswith(("hf_", "timm_")))  # type: ignore[union-attr]
    order = [AUTO_ENCODERS[0], *in_domain, *hub, *AUTO_ENCODERS[1:]]
    return [n for n in order if n in present]


def resolve_encoder(wh: Any, encoder: str, *, backbone: bool = False) -> str:
    """``"auto"`` -> the first of :func:`auto_order` (else ``dinov2_vits14``).

    ``backbone`` (the fine-tune): the same order among the registered encoders (the warehouse's own and
    Zoobot's included; an ``hf_hub:`` / ``timm:`` encoder is fine-tuned when named, not by ``auto``).
    """
    from features.embeddings import ENCODERS

    if encoder != "auto":
        return encoder
    order = [n for n in auto_order(wh) if not backbone or n in ENCODERS]
    return order[0] if order else "dinov2_vits14"


@dataclass
class _Run:
    """A run's resolved config, split set, tables read and notes, before fitting."""

    cfg: RunConfig
    split: SplitData
    read_tables: list[str]
    versions: dict[str, int]
    notes: list[str]
    tracking: str


def _prepare(wh: Any, name: str, kind: str, cfg: RunConfig, *, log: LogFn, run_id: str | None,
             ensure_splits: bool) -> _Run:
    """Resolve the encoder, check tracking, build or load the split set; nothing trained yet."""
    from models.tracking import require_wandb, wandb_project

    if hasattr(cfg, "encoder"):  # the probe, the fine-tune, fusion
        cfg = replace(cfg, encoder=resolve_encoder(wh, cfg.encoder, backbone=kind == "images"))
    if isinstance(cfg, FinetuneConfig):
        cfg = finetune_inputs(wh, cfg)
    if kind == "fusion":
        from models.fusion_data import check_frozen_encoder

        check_frozen_encoder(cfg.encoder)
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
    table = embedding_table(cfg.encoder) if hasattr(cfg, "encoder") else ""
    reads = {"embeddings": [table], "fusion": [table, "morphometrics", "photometry"]}
    read_tables = ["galaxies", "splits", *reads.get(kind, ["images"])]
    log(f"training {name} on {split_name} ({split.num_classes} classes, "
        f"{', '.join(f'{s} {len(split.ids[s])}' for s in SPLIT_NAMES)}), preset {cfg.preset}")
    notes: list[str] = []
    if split.excluded:
        notes.append(f"left out of the label set (too few galaxies for every split): "
                     f"{describe_excluded(split.excluded, limit=len(split.excluded))}")
        log(f"{name}: {notes[-1]}")
    return _Run(cfg, split, read_tables, versions, notes, tracking)


def train_model(
    wh: Any,
    name: str,
    config: RunConfig | None = None,
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
    config : RunConfig, optional
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
        records it (``gate_passed``, ``gate_json``); :func:`stages.predict.predict_all` writes
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
    log = log or (lambda message: None)
    run = _prepare(wh, name, spec.kind, config or make_config(name), log=log, run_id=run_id,
                   ensure_splits=ensure_splits)
    cfg, split = run.cfg, run.split
    tmp = Path(wh.models_dir) / name / f".tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        fitted = fit_step(spec)(wh, name, cfg, split, tmp, log, run.notes)
        seconds = time.perf_counter() - t0
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    table_versions = {t: int(run.versions[t]) for t in run.read_tables if t in run.versions}
    return finish_run(wh, name, spec.kind, cfg, split, fitted, tmp, seconds=seconds, notes=run.notes,
                      table_versions=table_versions, tracking=run.tracking, log=log, run_id=run_id)


def config_from_registry(wh: Any, name: str, version: int | None = None) -> RunConfig:
    """The config a registered model version was trained with (its kind's config class; rows written with
    the old all-kinds ``TrainConfig`` JSON load too, the fields the kind does not take dropped)."""
    return config_from_json(name, get_model(wh, name, version)["config_json"])


def retrain(wh: Any, name: str, version: int, **kwargs: Any) -> TrainOutcome:
    """Train ``name`` again with the config of ``version`` (same seeds: same split, same metrics on the CPU)."""
    return train_model(wh, name, replace(config_from_registry(wh, name, version)), **kwargs)
