"""One training loop for every torch model: ``fit(model, train, val, config, seed=..., log=...)``.

The loop is AdamW (Loshchilov & Hutter 2019) with a linear warm-up and a cosine decay per step,
cross-entropy with optional label smoothing (Szegedy et al. 2016) and optional class-balanced weights
(inverse class frequency, ``n / (K n_c)``), gradient clipping, bfloat16 autocast on a GPU, early
stopping on the validation balanced accuracy (the best epoch's weights are restored and checkpointed),
and a plain ``log(message)`` callable so it runs the same from a script, the CLI or a Dagster asset.

It also measures the data pipeline: the fraction of each step spent waiting for the next batch
(``data_wait_fraction``; the goal is under 10 %) and the throughput in images per second.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from models.data import GalaxyAugment, background_cache_fill, prepare_batch
from models.metrics import balanced_accuracy

__all__ = ["FitConfig", "FitResult", "class_weights", "evaluate", "fit", "recalibrate_bn", "seed_everything"]

LogFn = Callable[[str], None]
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds third-party code using the global state
    torch.manual_seed(seed)


@dataclass(frozen=True)
class FitConfig:
    """Hyperparameters of :func:`fit` (saved beside every checkpoint).

    Attributes
    ----------
    epochs : int
        Maximum number of epochs.
    lr : float
        Peak learning rate (parameter groups may scale it).
    weight_decay : float
    patience : int
        Stop after this many epochs without a better validation balanced accuracy.
    label_smoothing : float
    class_balanced : bool
        Weight the loss by inverse class frequency.
    warmup_frac : float
        Fraction of the steps spent in linear warm-up.
    grad_clip : float
        Clip the global gradient norm to this (0: no clipping).
    amp : bool
        bfloat16 autocast on a CUDA device (ignored on the CPU).
    max_steps : int
        Stop after this many optimizer steps in total (0: no limit); for smoke tests.
    augment : bool
        Apply :class:`models.data.GalaxyAugment` to training batches.
    bn_recalibration_batches : int
        Before each validation, re-estimate batch-norm statistics on this many un-augmented training
        batches (0: keep the running averages). See :func:`recalibrate_bn`.
    """

    epochs: int = 3
    lr: float = 1e-3
    weight_decay: float = 0.05
    patience: int = 5
    label_smoothing: float = 0.0
    class_balanced: bool = True
    warmup_frac: float = 0.05
    grad_clip: float = 1.0
    amp: bool = True
    max_steps: int = 0
    augment: bool = True
    bn_recalibration_batches: int = 8


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    history : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``val_balanced_accuracy``, ``seconds``.
    best_epoch : int
        1-based epoch whose weights were kept (0 if no epoch completed).
    best_val_balanced_accuracy : float
    steps : int
    seconds : float
        Wall time of training (without the final restore).
    images_per_s : float
        Training images per second (forward + backward + optimizer step, data wait included).
    data_wait_fraction : float
        Share of training step time spent waiting for the next batch.
    checkpoint : str or None
        Path of the best weights, when a checkpoint directory was given.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_balanced_accuracy: float = float("nan")
    steps: int = 0
    seconds: float = 0.0
    images_per_s: float = 0.0
    data_wait_fraction: float = 0.0
    checkpoint: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def class_weights(counts: Sequence[int]) -> torch.Tensor:
    """Inverse-frequency weights ``n / (K n_c)`` (1 for every class when balanced; 0 for absent ones)."""
    c = torch.as_tensor(list(counts), dtype=torch.float32)
    k = int((c > 0).sum())
    w = torch.where(c > 0, c.sum() / (k * c.clamp(min=1)), torch.zeros_like(c))
    return w


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader: DataLoader, device: torch.device, max_batches: int) -> int:
    """Re-estimate batch-norm running statistics as plain averages over training batches.

    With few optimizer steps (the CPU demo takes tens), the exponential running averages still weigh
    the initial statistics and the early, different weights, and evaluation-mode predictions collapse
    to one class while training-mode accuracy is fine. Recomputing the statistics with the final
    weights ("precise BN"; Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm") removes that gap.

    Returns
    -------
    int
        Number of batch-norm layers recalibrated (0: nothing to do).
    """
    bns = [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats]
    if not bns or max_batches <= 0:
        return 0
    momenta = [m.momentum for m in bns]
    was_training = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for i, (images, _) in enumerate(loader):
        if i >= max_batches:
            break
        model(prepare_batch(images, device))
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    model.train(was_training)
    return len(bns)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: str | torch.device = "cpu",
    *,
    amp: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and targets of every batch of ``loader`` (model in eval mode).

    Returns
    -------
    probs : numpy.ndarray, shape (N, K), float32
    targets : numpy.ndarray, shape (N,), int64
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    probs, targets = [], []
    for images, y in loader:
        x = prepare_batch(images, device)
        with _autocast(device, amp):
            logits = model(x)
        probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        targets.append(np.asarray(y, dtype=np.int64))
    model.train(was_training)
    if not probs:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return np.concatenate(probs).astype(np.float32), np.concatenate(targets)


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    config: FitConfig,
    *,
    seed: int = 0,
    log: LogFn | None = None,
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
    class_counts: Sequence[int] | None = None,
    param_groups: list[dict[str, Any]] | None = None,
    checkpoint_dir: str | Path | None = None,
) -> FitResult:
    """Train ``model`` in place; keep the weights of the epoch with the best validation balanced accuracy.

    Parameters
    ----------
    model : torch.nn.Module
        Maps normalised images to logits.
    train_loader, val_loader : DataLoader
        Yield ``(uint8 images (N, 3, H, W), class index)``; see :mod:`models.data`.
    config : FitConfig
    seed : int
        Seeds dropout, augmentation and anything else random inside the loop (the loaders carry
        their own seeded generators).
    log : callable, optional
        ``log(message)``; default: silent.
    device : str or torch.device
    num_classes : int, optional
        Needed with ``class_balanced`` when ``class_counts`` is not given.
    class_counts : sequence of int, optional
        Training galaxies per class, for the class-balanced loss (default: from
        ``train_loader.dataset.targets``).
    param_groups : list of dict, optional
        Optimizer groups (e.g. layer-wise decay); default: all parameters, no weight decay on 1-D ones.
    checkpoint_dir : path, optional
        Where to write ``best.pt`` (state dict) and ``fit_config.json``.

    Returns
    -------
    FitResult
    """
    log = log or (lambda message: None)
    device = torch.device(device)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    model.to(device)
    augment = GalaxyAugment() if config.augment else None

    weight = None
    if config.class_balanced:
        if class_counts is None:
            targets = np.asarray(getattr(train_loader.dataset, "targets", []), dtype=np.int64)
            k = int(num_classes or (targets.max() + 1 if len(targets) else 0))
            class_counts = np.bincount(targets[targets >= 0], minlength=k).tolist()
        weight = class_weights(class_counts).to(device)
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)

    if param_groups is None:
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
        param_groups = [{"params": decay, "weight_decay": config.weight_decay, "lr": config.lr},
                        {"params": no_decay, "weight_decay": 0.0, "lr": config.lr}]
    for g in param_groups:
        g.setdefault("lr", config.lr)
        g["base_lr"] = g["lr"]
    optimizer = torch.optim.AdamW(param_groups, lr=config.lr, weight_decay=config.weight_decay)

    steps_per_epoch = len(train_loader)
    total = config.epochs * steps_per_epoch
    if config.max_steps:
        total = min(total, config.max_steps)
    warmup = int(config.warmup_frac * total)

    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (ckpt_dir / "fit_config.json").write_text(json.dumps(asdict(config), indent=2))

    result = FitResult()
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs = 0
    step = 0
    n_images = 0
    wait_s = 0.0
    step_s = 0.0
    t_start = time.perf_counter()
    # Without loader workers, a thread decodes the stamps into the dataset's cache while the first epoch
    # trains (only decoding moves; batches and randomness stay here). It stops after that epoch.
    filler = contextlib.ExitStack()
    if not getattr(train_loader, "num_workers", 0):
        filler.enter_context(background_cache_fill(train_loader.dataset))
    for epoch in range(1, config.epochs + 1):
        model.train()
        t_epoch = time.perf_counter()
        losses: list[float] = []
        it = iter(train_loader)
        while step < total:
            t0 = time.perf_counter()
            try:
                images, y = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            for g in optimizer.param_groups:
                g["lr"] = g["base_lr"] * _lr_factor(step, total, warmup)
            x = prepare_batch(images, device, augment=augment, generator=gen)
            y = torch.as_tensor(y, device=device)
            with _autocast(device, config.amp):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            losses.append(float(loss.item()))  # synchronises, so step times are real
            t2 = time.perf_counter()
            wait_s += t1 - t0
            step_s += t2 - t0
            n_images += len(y)
            step += 1
        filler.close()
        recalibrate_bn(model, train_loader, device, config.bn_recalibration_batches)
        probs, targets = evaluate(model, val_loader, device, amp=config.amp)
        val_bacc = balanced_accuracy(targets, probs.argmax(axis=1)) if len(targets) else float("nan")
        val_loss = float(nn.functional.nll_loss(torch.log(torch.as_tensor(probs).clamp_min(1e-12)),
                                                torch.as_tensor(targets)).item()) if len(targets) else float("nan")
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else float("nan"),
               "val_loss": val_loss, "val_balanced_accuracy": val_bacc,
               "seconds": time.perf_counter() - t_epoch}
        result.history.append(row)
        log(f"epoch {epoch}/{config.epochs}: train loss {row['train_loss']:.4f}, val loss {val_loss:.4f}, "
            f"val balanced accuracy {val_bacc:.4f} ({row['seconds']:.1f} s)")
        improved = best_state is None or (val_bacc > result.best_val_balanced_accuracy + 1e-9)
        if improved:
            result.best_epoch = epoch
            result.best_val_balanced_accuracy = val_bacc
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            bad_epochs = 0
            if ckpt_dir is not None:
                torch.save(best_state, ckpt_dir / "best.pt")
                result.checkpoint = str(ckpt_dir / "best.pt")
        else:
            bad_epochs += 1
            if bad_epochs >= config.patience:
                log(f"early stop: no better validation balanced accuracy for {bad_epochs} epochs")
                break
        if step >= total:
            break
    result.seconds = time.perf_counter() - t_start
    result.steps = step
    result.images_per_s = n_images / step_s if step_s else 0.0
    result.data_wait_fraction = wait_s / step_s if step_s else 0.0
    if best_state is not None:
        model.load_state_dict(copy.deepcopy(best_state))
    log(f"kept epoch {result.best_epoch} (val balanced accuracy {result.best_val_balanced_accuracy:.4f}); "
        f"{result.images_per_s:.1f} images/s, data wait {100 * result.data_wait_fraction:.1f}% of step time")
    return result
