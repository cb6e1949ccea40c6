"""Self-supervised training: SimCLR on stored stamps, a checkpoint per epoch, resumable.

``train_simclr(images, backbone, config, checkpoint=..., log=...)`` runs without Dagster or a
warehouse (the ``ssl_encoder`` asset calls it through :mod:`stages.ssl`); the views, the head and the
loss are :mod:`features.ssl`. The budget is fixed: exactly
``config.epochs`` epochs (no early stopping: there is no validation signal without labels, and a fixed
budget makes the cost predictable).

Reproducibility and interruption
--------------------------------
Epoch ``e``'s batch order and every random view come from a ``torch.Generator`` seeded with
``(seed, e)``, and the learning rate is a closed-form cosine of the step (Loshchilov & Hutter 2017,
SGDR, without restarts; timm's scheduler in :func:`models.loop.train_loop`, the loop of every torch
model), so nothing random or stateful lives outside the checkpoint. After every epoch
the backbone, the projection head, the optimizer state and the loss history are written to
``checkpoint`` atomically (a temporary file, then :func:`os.replace`); a run that starts and finds a
checkpoint of the same configuration and training set (:meth:`SSLConfig.fingerprint`, ``data_key``)
continues after its last epoch. A process killed at any moment therefore loses at most the epoch it
was in, and a resumed run computes the same weights as one that was never interrupted (on the same
machine and thread count).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from features.embeddings import IMAGENET_MEAN, IMAGENET_STD
from features.ssl.config import SSLConfig
from features.ssl.simclr import ProjectionHead, nt_xent
from features.ssl.views import galaxy_views
from models.loop import LoopConfig, LoopResult, train_loop

__all__ = ["SSLConfig", "SSLResult", "normalise", "to_stamps", "train_simclr"]


@dataclass
class SSLResult:
    """What :func:`train_simclr` did.

    Attributes
    ----------
    losses : list of float
        Mean NT-Xent loss of each epoch (all epochs, resumed ones included).
    epoch_seconds : list of float
        Wall time of each epoch.
    resumed_from : int
        Epochs found done in the checkpoint (0: started from the beginning).
    n_images : int
    notes : list of str
        E.g. why a checkpoint was not resumed.
    """

    losses: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    resumed_from: int = 0
    n_images: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        """Training images per second over the epochs run in this process (two views each)."""
        run = self.epoch_seconds[self.resumed_from:]
        return self.n_images * len(run) / sum(run) if run and sum(run) > 0 else float("nan")


def normalise(x: torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` RGB to the ImageNet-normalised input :func:`features.embeddings.preprocess` gives."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def _atomic_save(obj: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _resume(path: Path, config: SSLConfig, data_key: str, backbone: nn.Module, head: nn.Module,
            opt: torch.optim.Optimizer, result: SSLResult, log: Callable[[str], None]) -> None:
    """Load a checkpoint of the same configuration and training set into the models, optimizer and result."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("fingerprint") == config.fingerprint() and state.get("data_key") == data_key:
        backbone.load_state_dict(state["backbone"])
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        for g in opt.param_groups:  # the schedule's peak (a checkpoint from before the timm schedule lacks it)
            g["initial_lr"] = config.lr
        result.losses, result.epoch_seconds = list(state["losses"]), list(state["epoch_seconds"])
        result.resumed_from = len(result.losses)
        log(f"ssl: resuming after epoch {result.resumed_from} from {path}")
    else:
        result.notes.append(f"checkpoint {path} is of another configuration or training set: started over")
        log(f"ssl: {result.notes[-1]}")


def train_simclr(
    images: torch.Tensor,
    backbone: nn.Module,
    config: SSLConfig | None = None,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    data_key: str = "",
    log: Callable[[str], None] = print,
) -> SSLResult:
    """Train ``backbone`` with SimCLR on ``images`` (in place) for ``config.epochs`` epochs.

    Parameters
    ----------
    images : torch.Tensor
        ``float32 [N, 3, S, S]`` in ``[0, 1]``, ``N >= 2`` (resized once by the caller).
    backbone : torch.nn.Module
        A timm model built with ``num_classes=0`` (its ``forward`` gives pooled ``[N, num_features]``).
        Left in eval mode.
    config : SSLConfig, optional
        Default :class:`features.ssl.config.SSLConfig`.
    checkpoint : path, optional
        The per-epoch checkpoint file; resumed when it matches (see module docstring).
    data_key : str
        Identifies the training set (e.g. its table versions); a checkpoint of another set is not resumed.
    log : callable
        One line per epoch.

    Raises
    ------
    ValueError
        Fewer than two images, or a batch size below 2.
    """
    config = config or SSLConfig()
    n = int(images.shape[0])
    if n < 2 or config.batch_size < 2:
        raise ValueError(f"SimCLR needs at least 2 images and a batch size of at least 2 (got {n} images, "
                         f"batch size {config.batch_size})")
    head = ProjectionHead(int(backbone.num_features), config.hidden_dim, config.proj_dim)  # type: ignore[arg-type]
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    result = SSLResult(n_images=n)
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.is_file():
        _resume(path, config, data_key, backbone, head, opt, result, log)
    batch = min(config.batch_size, n)
    steps = n // batch  # the last incomplete batch is dropped (a batch of one image has no negatives)
    model = nn.ModuleDict({"backbone": backbone, "head": head})

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Generator]]:
        gen = torch.Generator().manual_seed(int(config.seed) * 1_000_003 + epoch - 1)
        order = torch.randperm(n, generator=gen)
        for i in range(steps):
            yield images[order[i * batch:(i + 1) * batch]], gen

    def step(item: tuple[torch.Tensor, torch.Generator]) -> tuple[torch.Tensor, int]:
        x, gen = item
        views = torch.cat([galaxy_views(x, gen, config.views), galaxy_views(x, gen, config.views)])
        z = head(backbone(normalise(views)))
        return nt_xent(z[:len(x)], z[len(x):], config.temperature), len(x)

    def epoch_end(epoch: int, loop: LoopResult) -> None:
        row = loop.history[-1]
        result.losses.append(row["train_loss"])
        result.epoch_seconds.append(row["seconds"])
        if path is not None:  # before the log line: whoever reads "epoch e" finds its checkpoint on disk
            _atomic_save({"fingerprint": config.fingerprint(), "data_key": data_key, "epoch": epoch,
                          "backbone": backbone.state_dict(), "head": head.state_dict(),
                          "optimizer": opt.state_dict(), "losses": result.losses,
                          "epoch_seconds": result.epoch_seconds}, path)
        log(f"ssl epoch {epoch}/{config.epochs}: NT-Xent {result.losses[-1]:.3f}, "
            f"{result.epoch_seconds[-1]:.1f} s ({n / result.epoch_seconds[-1]:.0f} images/s)")

    train_loop(model, opt, batches, step, LoopConfig(epochs=config.epochs), steps_per_epoch=steps,
               start_epoch=result.resumed_from, on_epoch_end=epoch_end)
    backbone.eval()
    return result


def to_stamps(images, img_size: int, stamp: str = "frame") -> torch.Tensor:
    """Stored images to the ``float32 [N, 3, img_size, img_size]`` ``[0, 1]`` stamps SimCLR trains on.

    The same path as :func:`features.embeddings.preprocess` minus the mean / std (applied by
    :func:`normalise` after the views): :func:`features.pixels.model_input`, then an antialiased bicubic
    resize clamped to ``[0, 1]``, so a trained encoder sees at embedding time what it saw in training.
    ``stamp="galaxy"`` first cuts each frame on its galaxy (:func:`features.ssl.stamps.galaxy_stamps`,
    ``uint8`` stamps of ``img_size``), as the embedding of an encoder whose spec says so does.
    """
    from features.embeddings import preprocess
    from features.parallel import step_cores
    from features.ssl.stamps import STAMP_KINDS, galaxy_stamps

    if stamp not in STAMP_KINDS:
        raise ValueError(f"unknown stamp kind {stamp!r}; known: {', '.join(STAMP_KINDS)}")
    if stamp == "galaxy":
        images = galaxy_stamps(images, img_size, threads=step_cores())[0]
    x = preprocess(images, img_size)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x * std + mean).clamp_(0.0, 1.0)
