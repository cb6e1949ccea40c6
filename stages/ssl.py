"""SSL stage: pretrain a registered encoder on the warehouse's images, store its weights and their record.

No Dagster here: the ``ssl_encoder`` asset calls :func:`train_ssl_encoder`; the embeddings stage finds
the weights with :func:`ssl_weights`. The science (views, loss) is :mod:`features.ssl`, the
training :mod:`models.ssl`.

Files, under ``<root>/encoders/<encoder>/``:

- ``weights.safetensors``: the backbone's state dict in timm's layout, written atomically (a temporary
  file, fsync, :func:`os.replace`), so a reader sees the old file or the new one, never half of one;
- ``encoder.json``: its record (written after the weights, also atomically): SHA-256 of the weights,
  how training started (``scratch`` or ``continued from <repo> ...``), the training set (galaxy count,
  ``galaxies`` / ``images`` table versions, a hash of the ids), the budget (``max_images`` and the
  galaxies trained on, ``n_trained``), the configuration, the loss per epoch and the timings;
- ``checkpoint.pt`` while training runs (one per epoch, see :mod:`models.ssl`); removed once
  the weights are written. A rerun after a kill resumes from it;
- ``.lock``: held while training, so a second process is refused with a one-line error instead of
  training the same encoder twice.

A rerun whose training set, budget, configuration and start are those of the stored record reuses the
weights (nothing is trained); any change retrains.

The budget: SimCLR trains on at most ``max_images`` galaxies (default :data:`MAX_IMAGES`, a seeded sample
of the warehouse's), so a run sees at most ``max_images * epochs`` images whatever the catalogue's size;
every galaxy is still embedded by the encoder afterwards (the embeddings stage).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from features.embeddings import DEFAULT_SSL_ENCODER, ENCODERS, EncoderSpec
from features.errors import InputError, OfflineError
from features.parallel import step_cores
from features.ssl import SSLConfig
from features.weights import WeightsInfo, WeightsOrigin, load_timm_model, resolve_weights, sha256_file
from models.config import TRAIN_BUDGETS
from models.errors import MissingInputError
from models.ssl import to_stamps, train_simclr
from stages.files import atomic_write
from warehouse import Warehouse, WarehouseError

__all__ = ["ENCODERS_DIR", "INITS", "MAX_IMAGES", "SSLOutcome", "budget_sample", "new_backbone", "read_record",
           "ssl_dir", "ssl_weights", "train_ssl_encoder"]

ENCODERS_DIR = "encoders"
"""Directory under the warehouse root holding one directory per encoder trained in the warehouse."""

INITS = ("auto", "scratch", "pretrained")
"""How training starts: ``pretrained`` needs the spec's ``init_repo`` weights; ``auto`` uses them when
they resolve and starts from scratch otherwise (recorded either way)."""

READ_CHUNK = 512
"""Images decoded at a time."""

MAX_IMAGES = TRAIN_BUDGETS["ssl_encoder"]
"""Default budget: the most galaxies SimCLR trains on (:data:`models.config.TRAIN_BUDGETS`)."""


def ssl_dir(wh: Warehouse, name: str) -> Path:
    """``<root>/encoders/<name>`` (under the local state directory when the tables are on an object store)."""
    return Path(wh.local_root) / ENCODERS_DIR / name


def read_record(wh: Warehouse, name: str) -> dict[str, Any] | None:
    """The stored record of a trained encoder (``encoder.json``), or None when it was never trained."""
    path = ssl_dir(wh, name) / "encoder.json"
    return json.loads(path.read_text()) if path.is_file() else None


def ssl_weights(wh: Warehouse, name: str) -> WeightsInfo:
    """The weights file of an encoder trained in this warehouse, checked against its record's SHA-256.

    Raises
    ------
    models.errors.MissingInputError
        It was never trained here (materialize ``ssl_encoder`` first).
    features.errors.InputError
        The file does not match its record (changed or truncated after training).
    """
    record = read_record(wh, name)
    path = ssl_dir(wh, name) / "weights.safetensors"
    if record is None or not path.is_file():
        raise MissingInputError(f"encoder {name!r} has not been trained in {wh.root}: materialize the ssl_encoder "
                                "asset first (the demo does)")
    sha = sha256_file(path)
    if sha != record["weights_sha256"]:
        raise InputError(f"weights file {path} has sha256 {sha[:12]}, but its record says "
                         f"{record['weights_sha256'][:12]}; materialize ssl_encoder again")
    return WeightsInfo(path=path, sha256=sha, origin=WeightsOrigin.SELF_SUPERVISED)


@dataclass
class SSLOutcome:
    """What :func:`train_ssl_encoder` did (also the content of ``encoder.json``)."""

    encoder: str
    weights_path: str
    weights_sha256: str
    init: str
    n_images: int
    """Galaxies in the warehouse."""
    table_versions: dict[str, int]
    ids_sha256: str
    config: dict[str, Any]
    losses: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    images_per_second: float = float("nan")
    resumed_from: int = 0
    reused: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    max_images: int = 0
    """The budget (0: every galaxy)."""
    n_trained: int = 0
    """Galaxies trained on: ``min(n_images, max_images)``."""


def _spec(name: str) -> EncoderSpec:
    spec = ENCODERS.get(name)
    if spec is None or not spec.trained_here:
        known = ", ".join(n for n, s in ENCODERS.items() if s.trained_here)
        raise InputError(f"{name!r} is not an encoder trained in the warehouse; known: {known}")
    return spec


def new_backbone(spec: EncoderSpec, init: str = "auto", seed: int = 0, *, allow_download: bool = False):
    """The backbone training starts from, and a sentence saying how.

    Parameters
    ----------
    spec : EncoderSpec
        A ``trained_here`` encoder.
    init : str
        One of :data:`INITS`.
    seed : int
        Seeds the random initialisation (:func:`models.fit.seed_everything`).
    allow_download : bool
        Whether the ``init_repo`` weights may be downloaded.

    Returns
    -------
    model : torch.nn.Module
    start : str
        ``"scratch"`` (with the reason when pretrained weights were wanted but absent) or
        ``"continued from <repo> (<origin>, sha256 <12 hex>)"``.

    Raises
    ------
    features.errors.InputError
        An unknown ``init``; ``pretrained`` for a spec without ``init_repo``.
    features.errors.OfflineError
        ``pretrained`` whose weights do not resolve.
    """
    from models.fit import seed_everything

    if init not in INITS:
        raise InputError(f"unknown init {init!r}; known: {', '.join(INITS)}")
    if init == "pretrained" and spec.init_repo is None:
        raise InputError(f"encoder {spec.name!r} has no pretrained weights to start from (init_repo is None)")
    weights, start = None, "scratch"
    if init != "scratch" and spec.init_repo is not None:
        try:
            weights = resolve_weights(spec.init_repo, allow_download=allow_download)
        except OfflineError as exc:
            if init == "pretrained":
                raise
            start = f"scratch ({spec.init_repo} weights not available: {str(exc).split('. ')[0]})"
        else:
            start = f"continued from {spec.init_repo} ({weights.origin}, sha256 {weights.sha256[:12]})"
    elif init == "auto":
        start = "scratch (no pretrained weights exist for this backbone)"
    seed_everything(seed)
    return load_timm_model(spec.timm_name, weights, **spec.create_kwargs(spec.img_size)), start


def _training_set(wh: Warehouse) -> tuple[list[str], dict[str, int], str]:
    if not wh.exists("galaxies") or not wh.exists("images") or wh.count("galaxies") == 0:
        raise MissingInputError(f"no galaxies with images in {wh.root}; ingest a source first")
    ids = sorted(wh.read("galaxies", columns=["galaxy_id"]).column("galaxy_id").to_pylist())
    versions = {t: v for t, v in wh.versions().items() if t in ("galaxies", "images")}
    return ids, versions, hashlib.sha256("\n".join(ids).encode()).hexdigest()


def budget_sample(ids: list[str], max_images: int, seed: int) -> list[str]:
    """The galaxies SimCLR trains on: all of ``ids`` when they fit ``max_images`` (0: no cap), else a seeded
    sample of that many, in ``ids``' order (:func:`stages.trainers.subsample`, the classifiers' and the
    U-Net's budget sampler, with every galaxy in one class: SimCLR reads no label)."""
    import numpy as np

    from stages.trainers import subsample

    return subsample(ids, np.zeros(len(ids)), max_images, seed)[0]


def train_ssl_encoder(
    wh: Warehouse,
    name: str = DEFAULT_SSL_ENCODER,
    config: SSLConfig | None = None,
    *,
    init: str = "auto",
    allow_download: bool = False,
    force: bool = False,
    max_images: int = MAX_IMAGES,
    log: Callable[[str], None] = print,
) -> SSLOutcome:
    """Pretrain ``name`` with SimCLR on the warehouse's galaxy images (at most ``max_images``) and store its weights.

    Parameters
    ----------
    wh : Warehouse
    name : str
        A ``trained_here`` encoder of :data:`features.embeddings.ENCODERS`.
    config : SSLConfig, optional
        The fixed budget and hyperparameters (default :class:`features.ssl.SSLConfig`).
    init : str
        How training starts (:data:`INITS`).
    allow_download : bool
        Whether pretrained start weights may be downloaded.
    force : bool
        Retrain even when the stored weights are up to date.
    max_images : int
        The budget: train on at most this many galaxies, a sample seeded by ``config.seed``
        (:func:`budget_sample`; 0: all). Recorded with what it left out.
    log : callable
        Progress lines (one per epoch).

    Raises
    ------
    models.errors.MissingInputError
        No galaxies in the warehouse.
    warehouse.WarehouseError
        Another process is training the same encoder in this warehouse.
    features.errors.InputError
        Unknown encoder or ``init``, fewer than two galaxies, a negative ``max_images``.
    """
    import torch
    from filelock import FileLock, Timeout
    from safetensors.torch import save_file

    t0 = time.perf_counter()
    config = config or SSLConfig()
    spec = _spec(name)
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 0:
        raise InputError(f"ssl: max_images must be a whole number >= 0 (0: every galaxy); got {max_images!r}")
    ids, versions, ids_sha = _training_set(wh)
    if len(ids) < 2:
        raise InputError(f"SimCLR needs at least 2 galaxies; {wh.root} has {len(ids)}")
    train_ids = budget_sample(ids, max_images, config.seed)
    out = ssl_dir(wh, name)
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(out / ".lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise WarehouseError(f"another process is training encoder {name!r} in {out} (lock {lock.lock_file}); "
                             "wait for it to finish") from None
    try:
        record = read_record(wh, name)
        wanted = {"n_images": len(ids), "ids_sha256": ids_sha, "table_versions": versions,
                  "config": json.loads(json.dumps(config.as_dict())), "init_requested": init, "stamp": spec.stamp,
                  "max_images": max_images, "n_trained": len(train_ids)}
        if (not force and record is not None and all(record.get(k) == v for k, v in wanted.items())
                and (out / "weights.safetensors").is_file()):
            ssl_weights(wh, name)  # the file still matches its record
            log(f"ssl: {name} is up to date with its training set ({len(ids)} galaxies); weights reused")
            kept = {k: record[k] for k in SSLOutcome.__dataclass_fields__ if k in record}
            return SSLOutcome(**{**kept, "reused": True, "seconds": time.perf_counter() - t0})
        backbone, start = new_backbone(spec, init, config.seed, allow_download=allow_download)
        budget = (f"budget: {len(train_ids)} of {len(ids)} galaxies (max_images {max_images}, a sample seeded by "
                  f"{config.seed}), at most {len(train_ids) * config.epochs:,} images seen in {config.epochs} epochs")
        log(f"ssl: training {name} on {len(train_ids)} galaxies ({spec.img_size} px {spec.stamp} stamps), start: "
            f"{start}; {budget}")
        stamps = torch.cat([to_stamps(wh.read_images(train_ids[lo:lo + READ_CHUNK], threads=step_cores()),
                                      spec.img_size, spec.stamp)
                            for lo in range(0, len(train_ids), READ_CHUNK)])
        data_key = json.dumps({"ids_sha256": ids_sha, "versions": versions, "start": start, "stamp": spec.stamp,
                               **({"max_images": max_images} if len(train_ids) < len(ids) else {})}, sort_keys=True)
        result = train_simclr(stamps, backbone, config, checkpoint=out / "checkpoint.pt", data_key=data_key, log=log)
        weights = out / "weights.safetensors"
        state = {k: v.detach().contiguous() for k, v in backbone.state_dict().items()}
        atomic_write(weights, lambda p: save_file(state, str(p), metadata={"encoder": name, "objective": "SimCLR"}))
        outcome = SSLOutcome(
            encoder=name, weights_path=str(weights), weights_sha256=sha256_file(weights), init=start,
            n_images=len(ids), table_versions=versions, ids_sha256=ids_sha, config=config.as_dict(),
            losses=result.losses, epoch_seconds=result.epoch_seconds, images_per_second=result.images_per_second,
            resumed_from=result.resumed_from, notes=[*result.notes, budget], seconds=time.perf_counter() - t0,
            max_images=max_images, n_trained=len(train_ids))
        body = json.dumps({**asdict(outcome), "init_requested": init, "objective": "SimCLR (Chen et al. 2020)",
                           "timm_name": spec.timm_name, "img_size": spec.img_size, "stamp": spec.stamp},
                          indent=2, default=str)
        atomic_write(out / "encoder.json", lambda p: p.write_text(body))
        (out / "checkpoint.pt").unlink(missing_ok=True)
        return outcome
    finally:
        lock.release()
