"""Training and inference of a segmentation model: ``fit_segmenter(model, train, val, config, seed=, log=)``.

Why not :func:`models.fit.fit`: that loop's targets are one class index per image, its validation
metric (balanced accuracy of the per-image argmax) and its augmentation (``GalaxyAugment`` inside
``prepare_batch``) touch the images only; a per-pixel target must move with its image
(:class:`models.paired_augment.PairedAugment`) and be scored per pixel. The rest follows the same
shape: AdamW with a cosine decay, a plain ``log`` callable, a seeded generator, early stopping on the
validation score with the best epoch's weights restored.

The validation score is the mean IoU of the galaxy mask (labels > 0) against the *pseudo-labels* of the
validation galaxies: true masks are never used to train or to choose an epoch.

Inputs are uint8 ``(N, 3, S, S)`` stamps (:func:`features.pixels.model_input_uint8`, resized) scaled to
[0, 1], and uint8 ``(N, S, S)`` labels.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.fit import seed_everything
from models.paired_augment import PairedAugment

__all__ = ["SegFitConfig", "SegFitResult", "fit_segmenter", "predict_labels", "resize_images", "resize_labels"]

LogFn = Callable[[str], None]


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
    validation pseudo-labels) is kept.

    Returns
    -------
    SegFitResult
    """
    log = log or (lambda message: None)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    augment = PairedAugment() if config.augment else None
    x_train, y_train = train
    n = len(x_train)
    steps_per_epoch = max(1, math.ceil(n / config.batch_size))
    total = config.epochs * steps_per_epoch
    if config.max_steps:
        total = min(total, config.max_steps)
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=config.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=max(total, 2), pct_start=0.1)
    result = SegFitResult()
    best: dict[str, torch.Tensor] | None = None
    bad = 0
    step = 0
    t_start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        losses = []
        for start in range(0, n, config.batch_size):
            if step >= total:
                break
            idx = order[start:start + config.batch_size]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            x, y = x_train[idx].float() / 255.0, y_train[idx].long()
            if augment is not None:
                x, y = augment(x, y, gen)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step + 1 < max(total, 2):
                sched.step()
            losses.append(float(loss.item()))
            step += 1
        score = _val_iou(model, *val, config.batch_size) if len(val[0]) else float("nan")
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else float("nan"),
               "val_iou_pseudo": score, "seconds": time.perf_counter() - t0}
        result.history.append(row)
        log(f"unet epoch {epoch}/{config.epochs}: train loss {row['train_loss']:.4f}, val IoU vs pseudo-labels "
            f"{score:.4f} ({row['seconds']:.1f} s)")
        if best is None or score > result.best_val_iou + 1e-9 or not math.isfinite(result.best_val_iou):
            result.best_epoch, result.best_val_iou, bad = epoch, score, 0
            best = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= config.patience:
                log(f"unet early stop: no better validation IoU for {bad} epochs")
                break
        if step >= total:
            break
    result.seconds = time.perf_counter() - t_start
    result.steps = step
    result.images_per_s = step * config.batch_size / result.seconds if result.seconds else 0.0
    if best is not None:
        model.load_state_dict(best)
    model.eval()
    return result


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
