"""The classifiers' trainer: ``fit(model, train, val, config, seed=..., log=...)`` on :mod:`models.loop`.

What is the classifiers' own: AdamW (Loshchilov & Hutter 2019) over parameter groups (no decay on 1-D
parameters, or the caller's layer-wise groups), cross-entropy with optional label smoothing (Szegedy et al.
2016) and class-balanced weights (:func:`models.loop.class_weights`), augmentation inside
:func:`models.data.prepare_batch`, bfloat16 autocast on a GPU, and the validation score: batch-norm
recalibration, then loss and balanced accuracy. The schedule (warm-up + cosine), clipping, early stopping
with the best epoch restored (and checkpointed as ``best.pt``) and the throughput measures
(``data_wait_fraction``: goal under 10 %) are the loop's.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from models.data import GalaxyAugment, background_cache_fill, prepare_batch
from models.loop import LoopConfig, class_weights, seed_everything, train_loop
from models.metrics import balanced_accuracy

__all__ = ["FitConfig", "FitResult", "class_weights", "evaluate", "fit", "recalibrate_bn", "seed_everything"]

LogFn = Callable[[str], None]
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


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
    score_start : bool
        Score the model as given on validation before the first step (epoch 0) and keep it if no epoch
        beats it (:attr:`models.loop.LoopConfig.score_start`); for a head initialised from a probe.
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
    score_start: bool = False


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


def _optimizer(model: nn.Module, config: FitConfig, param_groups: list[dict[str, Any]] | None) -> torch.optim.AdamW:
    """AdamW over ``param_groups`` (default: no weight decay on 1-D parameters), each group at ``config.lr`` unless set."""
    if param_groups is None:
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
        param_groups = [{"params": decay, "weight_decay": config.weight_decay, "lr": config.lr},
                        {"params": no_decay, "weight_decay": 0.0, "lr": config.lr}]
    for g in param_groups:
        g.setdefault("lr", config.lr)
    return torch.optim.AdamW(param_groups, lr=config.lr, weight_decay=config.weight_decay)


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

    The classifier's step (augmented batch, cross-entropy) and score (batch-norm recalibration, then
    validation loss and balanced accuracy) on :func:`models.loop.train_loop`.

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
    optimizer = _optimizer(model, config, param_groups)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    result = FitResult()
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (ckpt_dir / "fit_config.json").write_text(json.dumps(asdict(config), indent=2))

    def step(batch: tuple[Any, Any]) -> tuple[torch.Tensor, int]:
        images, y = batch
        x = prepare_batch(images, device, augment=augment, generator=gen)
        y = torch.as_tensor(y, device=device)
        with _autocast(device, config.amp):
            logits = model(x)
        return loss_fn(logits.float(), y), len(y)

    # Without loader workers, a thread decodes the stamps into the dataset's cache while the first epoch
    # trains (only decoding moves; batches and randomness stay here). It stops after that epoch.
    filler = contextlib.ExitStack()
    if not getattr(train_loader, "num_workers", 0):
        filler.enter_context(background_cache_fill(train_loader.dataset))

    def score(epoch: int) -> dict[str, float]:
        filler.close()
        recalibrate_bn(model, train_loader, device, config.bn_recalibration_batches)
        probs, targets = evaluate(model, val_loader, device, amp=config.amp)
        if not len(targets):
            return {"val_loss": float("nan"), "val_balanced_accuracy": float("nan")}
        nll = nn.functional.nll_loss(torch.log(torch.as_tensor(probs).clamp_min(1e-12)), torch.as_tensor(targets))
        return {"val_loss": float(nll.item()), "val_balanced_accuracy": balanced_accuracy(targets, probs.argmax(axis=1))}

    def keep(epoch: int, state: dict[str, torch.Tensor]) -> None:
        if ckpt_dir is not None:
            torch.save(state, ckpt_dir / "best.pt")
            result.checkpoint = str(ckpt_dir / "best.pt")

    loop = LoopConfig(epochs=config.epochs, patience=config.patience, max_steps=config.max_steps,
                      grad_clip=config.grad_clip, warmup_frac=config.warmup_frac, select="val_balanced_accuracy",
                      score_start=config.score_start)
    try:
        out = train_loop(model, optimizer, lambda epoch: train_loader, step, loop, steps_per_epoch=len(train_loader),
                         score=score, on_improve=keep, log=log)
    finally:
        filler.close()
    result.history, result.best_epoch, result.best_val_balanced_accuracy = out.history, out.best_epoch, out.best_score
    result.steps, result.seconds = out.steps, out.seconds
    result.images_per_s, result.data_wait_fraction = out.images_per_s, out.data_wait_fraction
    log(f"kept epoch {result.best_epoch} (val balanced accuracy {result.best_val_balanced_accuracy:.4f}); "
        f"{result.images_per_s:.1f} images/s, data wait {100 * result.data_wait_fraction:.1f}% of step time")
    return result
