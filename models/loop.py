"""The one training loop of every torch model: ``train_loop(model, optimizer, batches, step, config, ...)``.

Classifiers (:func:`models.fit.fit`), the U-Net (:func:`models.segfit.fit_segmenter`), the fusion MLP
(:func:`models.fusion.fit_fusion`) and SimCLR (:func:`models.ssl.train_simclr`) each supply two
callables and keep what is theirs (augmentation, loss, validation metric, checkpoint format):

- ``batches(epoch)`` yields the batches of one epoch (its own seeded order);
- ``step(batch) -> (loss, n)`` runs the forward pass and returns the loss tensor and the batch size;
- ``score(epoch) -> {name: value}`` (optional) validates after each epoch.

The loop owns everything else, once: zeroing, backward, gradient clipping, the optimizer step, the
learning-rate schedule (timm's :class:`timm.scheduler.CosineLRScheduler`, linear warm-up from 0 then a
cosine to 0, per optimizer step; or a constant rate), the ``max_steps`` budget, the per-epoch history
row, early stopping on ``config.select`` with the best epoch's weights restored at the end, and the
throughput measures (images per second; the share of step time spent waiting for the next batch).
``start_epoch`` continues a run whose earlier epochs were restored from a checkpoint (SimCLR).

Why not PyTorch Lightning: measured (``benchmarks/bench_loop.py``; ``docs/architecture.md``, section
"Training"): the same small CNN fit took as long on both on 2 CPU cores, while Lightning is ~17 MB of new
packages (lightning, torchmetrics, lightning-utilities) with its own logging, checkpoint directories and
process handling, and SimCLR's resume-to-the-same-weights would move into its checkpoint format.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from timm.scheduler import CosineLRScheduler
from torch import nn

__all__ = ["LoopConfig", "LoopResult", "class_weights", "cosine_schedule", "seed_everything", "train_loop"]

LogFn = Callable[[str], None]
StepFn = Callable[[Any], tuple[torch.Tensor, int]]
ScoreFn = Callable[[int], dict[str, float]]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds third-party code using the global state
    torch.manual_seed(seed)


def class_weights(counts: Sequence[int]) -> torch.Tensor:
    """Class-balanced loss weights ``n / (K n_c)`` over the K classes present (0 for absent ones).

    :func:`sklearn.utils.class_weight.compute_class_weight` ("balanced") over the classes with at least
    one galaxy; a class without one gets weight 0 (it cannot be predicted from nothing, and ``K`` counts
    only the classes the loss sees, so a balanced set gets weight 1 everywhere).
    """
    c = np.asarray(list(counts), dtype=np.int64)
    out = np.zeros(len(c), dtype=np.float64)
    present = np.flatnonzero(c > 0)
    if len(present):
        y = np.repeat(np.arange(len(c)), c)
        out[present] = compute_class_weight("balanced", classes=present, y=y)
    return torch.as_tensor(out, dtype=torch.float32)


@dataclass(frozen=True)
class LoopConfig:
    """What :func:`train_loop` needs besides the callables.

    Attributes
    ----------
    epochs : int
        Last epoch (1-based count; with ``start_epoch`` the run continues up to it).
    patience : int
        Stop after this many epochs without a better ``select`` score (0: never stop early).
    max_steps : int
        Stop after this many optimizer steps in total (0: no limit).
    grad_clip : float
        Clip the global gradient norm to this (0: no clipping).
    schedule : {"cosine", "constant"}
        ``cosine``: :func:`cosine_schedule` over the run's steps; ``constant``: the optimizer's rates.
    warmup_frac : float
        Share of the steps in linear warm-up (``cosine`` only).
    select : str
        Key of the ``score`` dict that chooses the kept epoch (higher is better).
    score_start : bool
        With ``select``, also score the weights as given, before any step, as epoch 0: a run whose
        epochs never beat its start keeps the start (a fine-tune initialised from a probe can then
        only match or beat the probe on validation).
    name : str
        Prefix of the log lines (``"unet "``, ``"ssl "``; empty for classifiers).
    """

    epochs: int
    patience: int = 0
    max_steps: int = 0
    grad_clip: float = 0.0
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_frac: float = 0.0
    select: str = ""
    score_start: bool = False
    name: str = ""


@dataclass
class LoopResult:
    """What :func:`train_loop` did.

    Attributes
    ----------
    history : list of dict
        Per epoch: ``epoch``, ``train_loss`` (mean over images), the ``score`` values, ``seconds``.
    best_epoch : int
        1-based epoch whose weights were kept (the last one without ``select``; 0 if none ran, or if the
        start scored with ``score_start`` was never beaten).
    best_score : float
    steps : int
        Optimizer steps in this call.
    seconds : float
    images_per_s : float
        Training images per second (step time, data wait included).
    data_wait_fraction : float
        Share of the step time spent waiting for the next batch.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = float("nan")
    steps: int = 0
    seconds: float = 0.0
    images_per_s: float = 0.0
    data_wait_fraction: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0) -> CosineLRScheduler:
    """timm's per-step schedule: linear warm-up from 0 over ``warmup_steps``, then a cosine to 0.

    Every parameter group keeps its own peak (its ``lr`` when the schedule is made), so layer-wise rates
    stay in proportion; a group's ``lr_scale`` (timm's layer-decay groups, already applied to their
    ``lr``) is removed, since timm's scheduler would apply it a second time. Set the rate of step ``t`` (0-based) with ``schedule.step_update(t)``.
    """
    warmup = max(0, min(warmup_steps, total_steps - 1))
    for g in optimizer.param_groups:
        # timm multiplies a group's rate by its "lr_scale" (which timm's layer-decay groups carry) when it
        # sets it; our groups' "lr" already includes that scale, so it would be applied twice
        g.pop("lr_scale", None)
    return CosineLRScheduler(optimizer, t_initial=max(1, total_steps - warmup), lr_min=0.0, warmup_t=warmup,
                             warmup_lr_init=0.0, warmup_prefix=True, t_in_epochs=False)


def _improved(score: float, best: float, have_best: bool) -> bool:
    if not have_best:
        return True
    return math.isfinite(score) and (not math.isfinite(best) or score > best + 1e-9)


def _log_epoch(log: LogFn, config: LoopConfig, row: dict[str, float]) -> None:
    parts = [f"{k.replace('_', ' ')} {v:.4f}" for k, v in row.items() if k not in ("epoch", "seconds")]
    log(f"{config.name}epoch {int(row['epoch'])}/{config.epochs}: {', '.join(parts)} ({row['seconds']:.1f} s)")


def _run_epoch(batches: Iterable[Any], step: StepFn, optimizer: torch.optim.Optimizer, model: nn.Module,
               sched: CosineLRScheduler | None, config: LoopConfig, total: int, done: int, result: LoopResult,
               meter: list[Any]) -> tuple[float, int]:
    """One epoch's optimizer steps (until the batches or the step budget run out); the summed loss and images."""
    loss_sum, loss_n = 0.0, 0
    it = iter(batches)
    while done + result.steps < total:
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            break
        t1 = time.perf_counter()
        if sched is not None:
            sched.step_update(done + result.steps)
        loss, n = step(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        value = float(loss.detach())  # synchronises, so step times are real
        loss_sum += value * n
        loss_n += n
        meter[0] += n
        meter[1] += t1 - t0
        meter[2] += time.perf_counter() - t0
        result.steps += 1
    return loss_sum, loss_n


def train_loop(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[[int], Iterable[Any]],
    step: StepFn,
    config: LoopConfig,
    *,
    steps_per_epoch: int,
    score: ScoreFn | None = None,
    start_epoch: int = 0,
    on_epoch_end: Callable[[int, LoopResult], None] | None = None,
    on_improve: Callable[[int, dict[str, torch.Tensor]], None] | None = None,
    log: LogFn | None = None,
) -> LoopResult:
    """Train ``model`` in place; with ``config.select``, keep the weights of its best validation epoch.

    Parameters
    ----------
    model : torch.nn.Module
        Put in train mode before each epoch; its state is what early stopping keeps and restores.
    optimizer : torch.optim.Optimizer
    batches : callable
        ``batches(epoch)`` (1-based) -> iterable of the epoch's batches.
    step : callable
        ``step(batch) -> (loss tensor, images in the batch)``; the loop does backward and the update.
    config : LoopConfig
    steps_per_epoch : int
        For the schedule's length (``epochs * steps_per_epoch``, capped by ``max_steps``).
    score : callable, optional
        ``score(epoch) -> {name: value}`` after each epoch; required with ``config.select``.
    start_epoch : int
        Epochs already done (restored by the caller); the schedule continues from their steps.
    on_epoch_end : callable, optional
        ``on_epoch_end(epoch, result)`` after the history row (e.g. a resumable checkpoint).
    on_improve : callable, optional
        ``on_improve(epoch, best_state)`` when a better epoch is kept (e.g. write ``best.pt``).
    log : callable, optional
        One line per epoch (and one on an early stop).

    Returns
    -------
    LoopResult
    """
    log = log or (lambda message: None)
    total = config.epochs * steps_per_epoch
    if config.max_steps:
        total = min(total, config.max_steps)
    sched = cosine_schedule(optimizer, total, int(config.warmup_frac * total)) if config.schedule == "cosine" else None
    result = LoopResult()
    best_state: dict[str, torch.Tensor] | None = None
    bad = 0
    done = start_epoch * steps_per_epoch  # steps before this call (resumed epochs)
    meter = [0, 0.0, 0.0]  # images, seconds waiting for batches, seconds of whole steps
    t_start = time.perf_counter()
    if config.select and config.score_start and score is not None and start_epoch == 0:
        model.eval()
        row0 = {"epoch": 0, "train_loss": float("nan"), **score(0), "seconds": time.perf_counter() - t_start}
        result.history.append(row0)
        _log_epoch(log, config, row0)
        result.best_epoch, result.best_score = 0, float(row0[config.select])
        best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if on_improve is not None:
            on_improve(0, best_state)
    for epoch in range(start_epoch + 1, config.epochs + 1):
        model.train()
        t_epoch = time.perf_counter()
        loss_sum, loss_n = _run_epoch(batches(epoch), step, optimizer, model, sched, config, total, done, result, meter)
        row: dict[str, float] = {"epoch": epoch, "train_loss": loss_sum / loss_n if loss_n else float("nan")}
        if score is not None:
            row.update(score(epoch))
        row["seconds"] = time.perf_counter() - t_epoch
        result.history.append(row)
        _log_epoch(log, config, row)
        stop = done + result.steps >= total
        if config.select:
            value = float(row[config.select])
            if _improved(value, result.best_score, best_state is not None):
                result.best_epoch, result.best_score, bad = epoch, value, 0
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                if on_improve is not None:
                    on_improve(epoch, best_state)
            else:
                bad += 1
                if config.patience and bad >= config.patience:
                    log(f"{config.name}early stop: no better validation {config.select.replace('_', ' ')} "
                        f"for {bad} epochs")
                    stop = True
        else:
            result.best_epoch = epoch
        if on_epoch_end is not None:
            on_epoch_end(epoch, result)
        if stop:
            break
    result.seconds = time.perf_counter() - t_start
    n_images, wait_s, step_s = meter
    result.images_per_s = n_images / step_s if step_s else 0.0
    result.data_wait_fraction = wait_s / step_s if step_s else 0.0
    if best_state is not None:
        model.load_state_dict(best_state)
    return result
