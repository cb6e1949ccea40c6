"""Training data read straight from the warehouse.

* :class:`GalaxyImageDataset` reads images by ``galaxy_id`` with random access (one Lance ``take`` per
  batch through ``Warehouse.read_images``), never copying the table into memory; it can keep the
  resized uint8 stamps of up to ``cache_mb`` megabytes so later epochs skip PNG decoding. Every stamp
  is :func:`features.pixels.model_input` (in 8 bits), the normalisation the embeddings and query
  images get too.
* :class:`GalaxyAugment` applies the augmentations that are valid for galaxies, on whole batches on the
  training device: any rotation (a galaxy has no preferred orientation on the sky), horizontal and
  vertical flips (parity does not change the class; Dieleman et al. 2015), small shifts and scale
  changes (centring and distance errors) and a mild brightness / colour gain (calibration scatter).
* :func:`background_cache_fill` decodes a dataset's stamps into its cache in a thread while the first
  epoch trains (loaders without worker processes).

The module never imports the warehouse package: it takes any object with ``read_images`` /
``take`` / ``exists`` (a :class:`warehouse.Warehouse`).
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from features.embeddings import IMAGENET_MEAN, IMAGENET_STD
from features.pixels import model_input_uint8

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "GalaxyAugment",
    "GalaxyImageDataset",
    "ImageReader",
    "auto_num_workers",
    "background_cache_fill",
    "embeddings_table",
    "make_loader",
    "prepare_batch",
]



class ImageReader(Protocol):
    """What the dataset needs from the warehouse."""

    def read_images(self, galaxy_ids: Sequence[str]) -> list[np.ndarray]: ...


class GalaxyImageDataset(Dataset):
    """Images and class indices of a list of galaxies, read from the warehouse on demand.

    Parameters
    ----------
    reader : ImageReader
        A :class:`warehouse.Warehouse` (anything with ``read_images(ids)``).
    galaxy_ids : sequence of str
    targets : sequence of int, optional
        Class index per galaxy (``-1`` when absent, e.g. for prediction).
    img_size : int
        Side of the square stamp the model sees; stored images are resized (bilinear, antialiased).
    stamp : {"frame", "galaxy"}
        ``"galaxy"``: each image is first cut on its galaxy (:func:`features.ssl.stamps.galaxy_stamps`,
        which also resizes), as an encoder whose spec says so was trained and embeds (the fine-tune of
        ``ssl_resnet18``); ``"frame"``: the whole image.
    cache_mb : float
        Keep up to this many megabytes of resized uint8 stamps in memory (0: decode every time).
    threads : int
        Decode and resize a batch on this many threads, each reading its own part of the batch (Pillow
        and numpy release the GIL for most of it); the stamps are the same. For inference and the
        pixel baselines, where nothing else runs meanwhile; training keeps 1 (the model's own threads
        are busy then).

    Notes
    -----
    Items are ``(uint8 tensor (3, S, S), int)``. ``__getitems__`` lets a ``DataLoader`` fetch a whole
    batch with one warehouse ``take``. Normalisation and augmentation happen on the device
    (:func:`prepare_batch`), so workers ship uint8 (4x less than float).
    """

    def __init__(
        self,
        reader: ImageReader,
        galaxy_ids: Sequence[str],
        targets: Sequence[int] | None = None,
        *,
        img_size: int = 64,
        cache_mb: float = 256.0,
        stamp: str = "frame",
        threads: int = 1,
    ) -> None:
        from features.ssl.stamps import STAMP_KINDS

        if stamp not in STAMP_KINDS:
            raise ValueError(f"unknown stamp kind {stamp!r}; known: {', '.join(STAMP_KINDS)}")
        self.stamp = stamp
        self.reader = reader
        self.threads = max(1, int(threads))
        self.galaxy_ids = list(galaxy_ids)
        self.targets = [-1] * len(self.galaxy_ids) if targets is None else [int(t) for t in targets]
        if len(self.targets) != len(self.galaxy_ids):
            raise ValueError(f"{len(self.galaxy_ids)} galaxy ids but {len(self.targets)} targets")
        self.img_size = int(img_size)
        self.stamp_bytes = self.img_size * self.img_size * 3
        self.cache_bytes = int(cache_mb * 1e6)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.galaxy_ids)

    def _resize(self, image: np.ndarray) -> np.ndarray:
        if self.stamp == "galaxy":
            from features.ssl.stamps import galaxy_stamps

            return galaxy_stamps([image], self.img_size)[0][0]
        img = model_input_uint8(image)
        if img.shape[0] != self.img_size or img.shape[1] != self.img_size:
            # reducing_gap: box-reduce by an integer factor first, then resample (fast, still antialiased)
            img = np.asarray(Image.fromarray(img).resize((self.img_size, self.img_size), Image.BILINEAR,
                                                         reducing_gap=2.0))
        return img

    def _stamps(self, indices: Sequence[int]) -> list[np.ndarray]:
        missing = [i for i in indices if i not in self._cache]
        fresh: dict[int, np.ndarray] = {}
        if missing:
            fresh = dict(zip(missing, self._read_resized(missing)))
            for i, stamp in fresh.items():
                if (len(self._cache) + 1) * self.stamp_bytes <= self.cache_bytes:
                    self._cache[i] = stamp
        return [self._cache[i] if i in self._cache else fresh[i] for i in indices]

    def _read_resized(self, indices: Sequence[int]) -> list[np.ndarray]:
        """The resized stamps of ``indices``, in order: one read per part, ``threads`` parts side by side."""
        def part(ks: Sequence[int]) -> list[np.ndarray]:
            return [self._resize(im) for im in self.reader.read_images([self.galaxy_ids[i] for i in ks])]

        from features.parallel import thread_map

        size = -(-len(indices) // min(self.threads, max(1, len(indices))))
        parts = [indices[k:k + size] for k in range(0, len(indices), size)]
        return [stamp for chunk in thread_map(part, parts, workers=self.threads) for stamp in chunk]

    @property
    def fits_in_cache(self) -> bool:
        """Whether every stamp of the dataset fits in ``cache_mb``."""
        return len(self) * self.stamp_bytes <= self.cache_bytes

    def fill_cache(self, *, batch_size: int = 64, stop: threading.Event | None = None) -> int:
        """Decode stamps into the cache in index order, ``batch_size`` per warehouse read.

        Stops when ``stop`` is set or the cache is full; returns the number of cached stamps. It makes
        no torch call, so it can run in a thread beside training: the stamps it caches are the ones the
        loader would decode itself, so the batches are unchanged.
        """
        for start in range(0, len(self), batch_size):
            if (stop is not None and stop.is_set()) or (len(self._cache) + 1) * self.stamp_bytes > self.cache_bytes:
                break
            self._stamps(range(start, min(len(self), start + batch_size)))
        return len(self._cache)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        stamps = self._stamps(list(indices))
        return [(torch.from_numpy(np.ascontiguousarray(s.transpose(2, 0, 1))), self.targets[i])
                for s, i in zip(stamps, indices)]


@contextmanager
def background_cache_fill(dataset: Dataset) -> Iterator[None]:
    """While the block runs, a thread decodes the dataset's stamps into its cache.

    Without loader workers, the first epoch otherwise decodes every PNG in the training thread while
    the model waits (``docs/benchmarks_training.md``). Lance reads and PNG decoding release the GIL, so
    a thread overlaps them with the training step. Only the decoding moves: batches, their order and
    everything random stay in the training thread, so results are unchanged. This does nothing for a
    dataset without ``fill_cache`` or one whose split does not fit in its cache. A read error in the
    thread is left to the training thread, which meets the same image and raises it there.
    """
    fill = getattr(dataset, "fill_cache", None)
    if fill is None or not getattr(dataset, "fits_in_cache", False):
        yield
        return
    stop = threading.Event()

    def _fill() -> None:
        try:
            fill(stop=stop)
        except Exception:  # the training thread reads the same image and reports it
            return

    thread = threading.Thread(target=_fill, name="astrovision-cache-fill", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def auto_num_workers(device: str | torch.device) -> int:
    """Data-loader workers that keep the model busy without starving it of cores.

    On a GPU, one worker per spare core up to 8 (decoding and resizing run beside the GPU step). On the
    CPU the model itself uses every core, so loading in the main process is fastest
    (``docs/benchmarks_training.md`` has the measured data-wait fraction).
    """
    if torch.device(device).type == "cpu":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
    drop_last: bool = False,
) -> DataLoader:
    """A seeded ``DataLoader`` (same seed, same batch order, whatever the worker count)."""
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=gen,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        drop_last=drop_last,
        # Lance is not fork-safe: workers start with spawn (once: they persist across epochs)
        multiprocessing_context="spawn" if num_workers > 0 else None,
    )


class GalaxyAugment(nn.Module):
    """Galaxy-valid augmentations of a batch, as one affine resampling plus a colour gain.

    Parameters
    ----------
    max_shift : float
        Largest shift as a fraction of the stamp side (uniform in ``[-max_shift, max_shift]``).
    scale_range : (float, float)
        Zoom factor range (log-uniform).
    brightness : float
        Largest relative change of overall brightness.
    colour : float
        Largest relative change of each channel's gain (mild: colours carry morphology information).

    Notes
    -----
    Rotation is uniform in ``[0, 2 pi)`` and each axis is flipped with probability 1/2. Pixels rotated in
    from outside the stamp are reflected (sky-like texture, not black corners). Randomness comes from
    the ``generator`` passed to :meth:`forward`, so a seeded fit augments identically.
    """

    def __init__(
        self,
        max_shift: float = 0.05,
        scale_range: tuple[float, float] = (0.9, 1.1),
        brightness: float = 0.05,
        colour: float = 0.03,
    ) -> None:
        super().__init__()
        self.max_shift = max_shift
        self.scale_range = scale_range
        self.brightness = brightness
        self.colour = colour

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment ``x`` (``(N, C, H, W)`` float in ``[0, 1]``)."""
        n = x.shape[0]

        def u(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator).to(x.device, x.dtype)

        theta = u(n) * 2 * math.pi
        lo, hi = math.log(self.scale_range[0]), math.log(self.scale_range[1])
        scale = torch.exp(lo + (hi - lo) * u(n))
        flip_x = torch.where(u(n) < 0.5, -1.0, 1.0).to(x.dtype)
        flip_y = torch.where(u(n) < 0.5, -1.0, 1.0).to(x.dtype)
        shift = (u(n, 2) * 2 - 1) * self.max_shift * 2  # grid units span [-1, 1]
        cos, sin = torch.cos(theta) / scale, torch.sin(theta) / scale
        mat = torch.stack(
            [
                torch.stack([cos * flip_x, -sin * flip_y, shift[:, 0]], dim=1),
                torch.stack([sin * flip_x, cos * flip_y, shift[:, 1]], dim=1),
            ],
            dim=1,
        )
        grid = nn.functional.affine_grid(mat, list(x.shape), align_corners=False)
        out = nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        gain = (1 + (u(n, 1, 1, 1) * 2 - 1) * self.brightness) * (1 + (u(n, x.shape[1], 1, 1) * 2 - 1) * self.colour)
        return (out * gain).clamp_(0, 1)


def prepare_batch(
    images: torch.Tensor,
    device: torch.device,
    *,
    augment: GalaxyAugment | None = None,
    generator: torch.Generator | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` -> augmented, normalised float on ``device``."""
    x = images.to(device, non_blocking=True).float().div_(255.0)
    if augment is not None:
        x = augment(x, generator)
    m = torch.tensor(mean, device=device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def embeddings_table(encoder: str) -> str:
    """The table of an encoder's stored embeddings, ``embeddings_<encoder>``.

    The name :func:`warehouse.schemas.embeddings.embedding_table` gives (a test keeps the two equal);
    ``models`` does not import the warehouse package.
    """
    return f"embeddings_{encoder}"
