"""Training and inference of a segmentation model: ``fit_segmenter(model, train, val, config, seed=, log=)``.

Why not :func:`models.fit.fit`: that loop's targets are one class index per image, its validation
metric (balanced accuracy of the per-image argmax) and its augmentation (``GalaxyAugment`` inside
``prepare_batch``) touch the images only; a per-pixel target must move with its image
(:class:`models.paired_augment.PairedAugment`) and be scored per pixel. Those three are this
module's; the rest is :func:`models.loop.train_loop`'s (AdamW steps, warm-up + cosine schedule, early
stopping on the validation score with the best epoch's weights restored).

The validation score is the mean IoU of the galaxy mask (labels > 0) against the *pseudo-labels* of the
validation galaxies: true masks are never used to train or to choose an epoch.

Inputs are uint8 ``(N, 3, S, S)`` stamps (:func:`features.pixels.model_input_uint8`, resized) scaled to
[0, 1], and uint8 ``(N, S, S)`` labels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.loop import LoopConfig, seed_everything, train_loop
from models.paired_augment import PairedAugment

__all__ = ["SegFitConfig", "SegFitResult", "fit_segmenter", "predict_labels", "resize_images", "resize_labels"]

LogFn = Callable[[str], None]
WARMUP_FRAC = 0.1
"""Share of the U-Net's steps in linear warm-up (then a cosine to 0; :func:`models.loop.cosine_schedule`)."""


@dataclass(frozen=True)
class SegFitConfig:
    """Hyperparameters of :func:`fit_segmenter` (saved in the registry row).

    Attributes
    ----------
    size : int
        Side of the training stamps (the stored stamps are resized to it).
    epochs, batch_size : int
    lr, weight_decay : float
    patience : int
        Stop after this many epochs without a better validation IoU.
    augment : bool
        Apply :class:`models.paired_augment.PairedAugment`.
    base, depth : int
        U-Net width and depth (:class:`models.unet.UNet`).
    max_steps : int
        Stop after this many optimizer steps (0: no limit); for smoke tests.
    max_train : int
        Train on at most this many galaxies (0: all): the training budget, a seeded class-stratified
        sample taken by the caller (:func:`stages.segmentation.train_unet`); the ``unet`` asset's default
        is :data:`models.config.TRAIN_BUDGETS` ``["unet"]``.
    """

    size: int = 64
    epochs: int = 8
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 3
    augment: bool = True
    base: int = 16
    depth: int = 3
    max_steps: int = 0
    max_train: int = 0


@dataclass
class SegFitResult:
    """Per-epoch history, the kept epoch and throughput of one :func:`fit_segmenter` run."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_iou: float = float("nan")
    steps: int = 0
    seconds: float = 0.0
    images_per_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resize_images(images: list[np.ndarray], size: int) -> torch.Tensor:
    """``(H, W, 3)`` uint8 stamps -> ``(N, 3, size, size)`` uint8 (area averaging when shrinking)."""
    out = torch.empty((len(images), 3, size, size), dtype=torch.uint8)
    for i, im in enumerate(images):
        x = torch.tensor(np.asarray(im), dtype=torch.float32).permute(2, 0, 1)[None]
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="area" if x.shape[-1] >= size else "bilinear")
        out[i] = x[0].round().clamp(0, 255).to(torch.uint8)
    return out


def resize_labels(labels: list[np.ndarray], size: int) -> torch.Tensor:
    """``(H, W)`` integer labels -> ``(N, size, size)`` uint8 (``nearest-exact``)."""
    out = torch.empty((len(labels), size, size), dtype=torch.uint8)
    for i, lab in enumerate(labels):
        x = torch.tensor(np.asarray(lab), dtype=torch.float32)[None, None]
        out[i] = F.interpolate(x, size=(size, size), mode="nearest-exact")[0, 0].to(torch.uint8)
    return out


def _galaxy_iou(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    pred = logits.argmax(1) > 0
    true = labels > 0
    inter = (pred & true).flatten(1).sum(1).float()
    union = (pred | true).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@torch.no_grad()
def _val_iou(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int) -> float:
    model.eval()
    scores = [_galaxy_iou(model(images[i:i + batch].float() / 255.0), labels[i:i + batch].long())
              for i in range(0, len(images), batch)]
    return float(torch.cat(scores).mean()) if scores else float("nan")


def fit_segmenter(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                  config: SegFitConfig, *, seed: int = 0, log: LogFn | None = None) -> SegFitResult:
    """Train ``model`` in place on ``(images uint8 (N, 3, S, S), labels uint8 (N, S, S))`` pairs.

    Loss: per-pixel cross-entropy. The epoch with the best validation galaxy IoU (against the
    validation pseudo-labels) is kept (:func:`models.loop.train_loop`).

    Returns
    -------
    SegFitResult
    """
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    augment = PairedAugment() if config.augment else None
    x_train, y_train = train
    n = len(x_train)
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=config.lr)

    def batches(epoch: int) -> Iterator[torch.Tensor]:
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, config.batch_size):
            idx = order[start:start + config.batch_size]
            if len(idx) >= 2:  # batch norm needs two samples
                yield idx

    def step(idx: torch.Tensor) -> tuple[torch.Tensor, int]:
        x, y = x_train[idx].float() / 255.0, y_train[idx].long()
        if augment is not None:
            x, y = augment(x, y, gen)
        return F.cross_entropy(model(x), y), len(idx)

    def score(epoch: int) -> dict[str, float]:
        return {"val_iou_pseudo": _val_iou(model, *val, config.batch_size) if len(val[0]) else float("nan")}

    loop = LoopConfig(epochs=config.epochs, patience=config.patience, max_steps=config.max_steps,
                      warmup_frac=WARMUP_FRAC, select="val_iou_pseudo", name="unet ")
    out = train_loop(model, opt, batches, step, loop, steps_per_epoch=max(1, math.ceil(n / config.batch_size)),
                     score=score, log=log)
    model.eval()
    return SegFitResult(out.history, out.best_epoch, out.best_score, out.steps, out.seconds, out.images_per_s)


@torch.no_grad()
def predict_labels(model: nn.Module, images: torch.Tensor, out_size: tuple[int, int], *, batch: int = 64) -> np.ndarray:
    """Labels ``(N, H, W)`` uint8 at ``out_size``: logits upsampled (bilinear) from the model's size, argmax."""
    model.eval()
    out = np.empty((len(images), *out_size), dtype=np.uint8)
    for i in range(0, len(images), batch):
        logits = model(images[i:i + batch].float() / 255.0)
        if tuple(logits.shape[-2:]) != tuple(out_size):
            logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
        out[i:i + batch] = logits.argmax(1).to(torch.uint8).numpy()
    return out
