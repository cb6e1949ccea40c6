"""Galaxy embeddings from self-supervised vision transformers (DINOv2), computed with timm.

Encoders
--------
A small registry, :data:`ENCODERS`:

==================  ===========================================  =====  ==========================
name                timm model                                   dim    weights
==================  ===========================================  =====  ==========================
``dinov2_vits14``   ``vit_small_patch14_dinov2.lvd142m``         384    ``timm/<model>`` on the Hub
``dinov2_vitb14``   ``vit_base_patch14_dinov2.lvd142m``          768    ``timm/<model>`` on the Hub
``random_vits14``   ``vit_small_patch14_dinov2`` (same network)  384    none: timm's init, seed 0
``ssl_resnet18``    ``resnet18`` at half width (32-256 channels) 256    trained in the warehouse
``zoobot_*``        ``convnext_nano`` ... (Zoobot's family)      640..  ``mwalmsley/zoobot-encoder-*``
==================  ===========================================  =====  ==========================

Beside the registered names, ``hf_hub:<owner>/<repo>`` and ``timm:<model>`` load any timm encoder from
the Hub (:mod:`features.hub_encoders`, which also registers Zoobot's family: 224 px, [0, 1] pixels with
no ImageNet normalisation, one channel for the greyscale ones).

``ssl_resnet18`` is trained by the ``ssl_encoder`` asset on the warehouse's own images with SimCLR
(Chen et al. 2020; :mod:`features.ssl`, :mod:`stages.ssl`), on 64 x 64 stamps centred and scaled on
each galaxy (its ``stamp="galaxy"``: :func:`features.ssl.stamps.galaxy_stamps`, cut the same way when
it embeds, so it sees in use what it saw in training); its weights file lies
under the warehouse root (``<root>/encoders/ssl_resnet18/weights.safetensors``, with a record of its
SHA-256, the training set's table versions and whether it started from scratch or continued from
pretrained weights). A CNN has no tokens: both of its outputs are the global average pool of the last
feature map (timm's ``forward_head`` input), so ``vector`` and ``patch_mean`` are equal.

DINOv2 is Oquab et al. (2024), "DINOv2: Learning Robust Visual Features without Supervision", TMLR.
``random_vits14`` is the named random baseline: the same architecture with a seeded random
initialisation, flagged :attr:`features.flags.Flag.RANDOM_WEIGHTS`. Its LayerScale factors start at
1 instead of DINOv2's 1e-5 (Touvron et al. 2021, "Going deeper with image transformers"): with 1e-5
every random block adds almost nothing to the residual stream, so the CLS token is the same vector for
every image (pairwise cosine distances ~1e-7, below float32 resolution) and neighbour order would be
rounding noise. With LayerScale 1 distances are ~1e-4-1e-2: still near-chance neighbours, but ordered. Pretrained weights are resolved by
:func:`features.weights.resolve_weights`; nothing falls back to random weights silently.

Preprocessing (:func:`preprocess`)
----------------------------------
1. :func:`features.pixels.model_input`, the one normalisation every model input goes through (training,
   stored embeddings, query images): composites ``uint8 / 255``, flux images a percentile stretch,
   grey repeated to RGB, non-finite pixels 0 (see that module).
2. The stamp (256 x 256 for DECaLS) is resized to the encoder's input (224 x 224, i.e. 16 x 16 patches
   of 14 px; the ``random_vits14`` baseline 112 x 112, :data:`RANDOM_BASELINE_SIZE`) with antialiased
   bicubic interpolation (timm's DINOv2 interpolation), clamped to [0, 1].
3. The encoder's normalisation: ImageNet's, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225), unless
   its spec says otherwise (Zoobot: mean 0, std 1; a greyscale encoder first averages the three channels).

Outputs (:func:`embed_images`)
------------------------------
From timm's ``forward_features`` (the final LayerNorm applied): the CLS token (used for similarity
search) and the mean of the patch tokens (register tokens excluded), both float32 ``[N, D]``.
Inference runs under :func:`torch.inference_mode` in batches, on every core the process may use
(or the GPU when present), and is deterministic: the same images give the same vectors.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features.encoder_spec import IMAGENET_MEAN, IMAGENET_STD, EncoderSpec
from features.errors import InputError, OfflineError
from features.flags import Flag
from features.hub_encoders import ZOOBOT_ENCODERS, build_hub_model, hub_config, hub_spec, resolve_hub_weights
from features.parallel import step_cores
from features.pixels import model_input
from features.sources.base import image_flags
from features.sources.folder import read_image_file
from features.weights import WeightsInfo, WeightsOrigin, load_timm_model, resolve_weights, sha256_file

__all__ = [
    "BASELINE_SAMPLE",
    "DEFAULT_ENCODER",
    "DEFAULT_SSL_ENCODER",
    "ENCODERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IN_DOMAIN_DEFAULT",
    "RANDOM_BASELINE_SIZE",
    "Encoder",
    "EncoderChoice",
    "EncoderSpec",
    "choose_default_encoder",
    "embed_images",
    "encoder_spec",
    "image_flags",
    "in_baseline_sample",
    "load_encoder",
    "load_image_file",
    "pooled_features",
    "preprocess",
    "sample_fraction",
]

RANDOM_BASELINE_SIZE = 112
"""Input side of the ``random_vits14`` baseline: 8 x 8 patches of 14 px instead of DINOv2's 16 x 16.

A random network has no scale it was trained at, and what the baseline is compared on (the probe, the
lookalike precision, the correlations and CV R^2 of the analysis, all against a pixel baseline of 8 x 8
thumbnails) needs a random projection of the galaxy, not 256 tokens of it: 64 tokens cost ~4-5x less
than 256 (self-attention is quadratic in them), so the baseline is no longer the longest stage of a run
(``docs/benchmarks.md``, "CPU utilisation")."""

BASELINE_SAMPLE = 3000
"""How many galaxies, in expectation, get a ``random_vits14`` vector when it is computed as the baseline
beside another encoder (:func:`in_baseline_sample`; 0: every galaxy).

What the baseline is compared on needs a sample, not the catalogue: the analysis' Spearman rho of a PC
with a quantity has a 95 % CI half-width of about 1.96 / sqrt(n), 0.036 at 3,000 galaxies (0.015 at
17,736), and its cross-validated R^2 compares the encoders and the pixel baseline on the galaxies they
all cover, so 3,000 paired galaxies; the anomaly scores and the maps of the baseline are its own. At
Galaxy10's 17,736 galaxies this cuts the baseline's ~5.9 min of embedding to ~1 min
(``docs/benchmarks.md``, "Galaxy10 rehearsal"); the demo's 600 are all embedded. When the baseline
is the only encoder (no other weights, nothing trained), every galaxy is embedded with it."""


def sample_fraction(galaxy_id: str) -> float:
    """A fixed pseudo-random number in [0, 1) for a galaxy: the first 8 bytes of the SHA-1 of its id / 2**64."""
    return int.from_bytes(hashlib.sha1(galaxy_id.encode()).digest()[:8], "big") / 2.0**64


def in_baseline_sample(galaxy_ids: Sequence[str], n_galaxies: int, k: int = BASELINE_SAMPLE) -> list[bool]:
    """Whether each galaxy is in the baseline's sample of about ``k`` of ``n_galaxies``.

    A Bernoulli sample with a hash as the coin (the galaxy is in when :func:`sample_fraction` of its
    id is below ``k / n_galaxies``; hash-based sampling as in Duffield & Grossglauser 2001, "Trajectory
    sampling for direct traffic observation", IEEE/ACM ToN 9, 280): the same galaxies whatever the shard
    layout, the order of the shards or the process, so every shard of a run samples at the same rate
    and a re-run embeds the same galaxies. As a catalogue grows the rate only falls, so every galaxy in
    the sample at the current size was in it when its shard was embedded (the table holds a superset).

    Parameters
    ----------
    galaxy_ids : sequence of str
    n_galaxies : int
        The catalogue's size (the warehouse's ``galaxies`` rows).
    k : int
        Expected sample size; 0, or ``k >= n_galaxies``: every galaxy.
    """
    if k <= 0 or k >= n_galaxies:
        return [True] * len(galaxy_ids)
    rate = k / n_galaxies
    return [sample_fraction(g) < rate for g in galaxy_ids]


ENCODERS: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in (
        EncoderSpec("dinov2_vits14", "vit_small_patch14_dinov2.lvd142m",
                    "timm/vit_small_patch14_dinov2.lvd142m", 384,
                    description="DINOv2 ViT-S/14 (Oquab et al. 2024), LVD-142M pretraining"),
        EncoderSpec("dinov2_vitb14", "vit_base_patch14_dinov2.lvd142m",
                    "timm/vit_base_patch14_dinov2.lvd142m", 768,
                    description="DINOv2 ViT-B/14 (Oquab et al. 2024), LVD-142M pretraining"),
        EncoderSpec("random_vits14", "vit_small_patch14_dinov2", None, 384, img_size=RANDOM_BASELINE_SIZE, seed=0,
                    description="ViT-S/14 with timm's random initialisation (seed 0, LayerScale 1) at "
                                f"{RANDOM_BASELINE_SIZE} px: a named baseline",
                    timm_kwargs=(("init_values", 1.0),)),
        EncoderSpec("ssl_resnet18", "resnet18", None, 256, img_size=64, trained_here=True,
                    description="ResNet-18 at half width, SimCLR (Chen et al. 2020) on this warehouse's images",
                    timm_kwargs=(("channels", (32, 64, 128, 256)), ("stem_width", 32)), stamp="galaxy"),
        *ZOOBOT_ENCODERS,
    )
}
"""The encoder registry, by name."""

DEFAULT_ENCODER = "dinov2_vits14"
"""The general-purpose encoder ``auto`` uses when its weights resolve and no in-domain one does (else
``ssl_resnet18`` beside ``random_vits14``)."""

DEFAULT_SSL_ENCODER = "ssl_resnet18"
"""The encoder the ``ssl_encoder`` asset trains by default."""


@dataclass(frozen=True)
class Encoder:
    """A loaded encoder: the network plus the provenance stored with each of its vectors.

    Attributes
    ----------
    spec : EncoderSpec
    model : torch.nn.Module
        timm model in eval mode, ``num_classes=0``.
    weights_sha256 : str
        SHA-256 of the weights file; for a random baseline, of its initial state dict (so a change of
        initialisation is visible).
    weights_origin : WeightsOrigin
        ``LOCAL`` / ``CACHE`` / ``DOWNLOAD``, or ``RANDOM_INIT`` for a random baseline.
    img_size : int
        Input side actually used (the spec's unless overridden, e.g. in tests).
    """

    spec: EncoderSpec
    model: object
    weights_sha256: str
    weights_origin: WeightsOrigin
    img_size: int

    @property
    def name(self) -> str:
        """Registry name."""
        return self.spec.name

    @property
    def dim(self) -> int:
        """Embedding width."""
        return self.spec.dim

    @property
    def flags(self) -> int:
        """Flags every vector of this encoder carries (``RANDOM_WEIGHTS`` for a random baseline)."""
        return int(Flag.RANDOM_WEIGHTS) if self.weights_origin.is_random else 0


def encoder_spec(name: str) -> EncoderSpec:
    """The spec of a registered name, an ``hf_hub:<owner>/<repo>`` or a ``timm:<model>`` encoder.

    Raises
    ------
    features.errors.InputError
        Any other name (the message lists the registered names and the two forms).
    """
    spec = ENCODERS.get(name) or hub_spec(name, ENCODERS)
    if spec is None:
        raise InputError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}, or hf_hub:<owner>/<repo>, "
                         "timm:<model>")
    return spec


def _state_sha256(model) -> str:
    h = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def load_encoder(
    name: str,
    weights_path: str | os.PathLike[str] | None = None,
    *,
    img_size: int | None = None,
    weights: WeightsInfo | None = None,
    allow_download: bool = True,
    timeout_s: float = 5.0,
) -> Encoder:
    """Build a registered encoder with its weights.

    Parameters
    ----------
    name : str
        A key of :data:`ENCODERS`, ``hf_hub:<owner>/<repo>`` or ``timm:<model>``
        (:mod:`features.hub_encoders`).
    weights_path : path, optional
        A local ``.safetensors`` / ``.pth`` file in timm's layout (see :func:`features.weights.resolve_weights`
        for the other places searched). Not allowed for a random baseline; required for an encoder
        trained in the warehouse (``stages.embeddings.get_encoder`` finds it under the warehouse root).
    img_size : int, optional
        Override the input size (a multiple of 14); tests use tiny sizes.
    weights : WeightsInfo, optional
        Already resolved weights (skips resolution).
    allow_download, timeout_s
        Passed to :func:`features.weights.resolve_weights`.

    Raises
    ------
    features.errors.OfflineError
        The pretrained weights cannot be found or fetched (never a silent random fallback).
    features.errors.InputError
        Unknown encoder, missing file, or weights that do not fit.
    """
    import torch

    spec = encoder_spec(name)
    if spec.hub:
        weights = weights or resolve_hub_weights(spec, weights_path, allow_download=allow_download,
                                                 timeout_s=timeout_s)
        config = hub_config(spec, weights, allow_download=allow_download, timeout_s=timeout_s)
        model, spec = build_hub_model(spec, weights, config, img_size)
        return Encoder(spec, model, weights.sha256, weights.origin, spec.img_size)
    size = int(img_size or spec.img_size)
    if spec.is_random:
        if weights_path or weights:
            raise InputError(f"encoder {name!r} is a random baseline and takes no weights file")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(spec.seed or 0))
            model = load_timm_model(spec.timm_name, None, **spec.create_kwargs(size))
        return Encoder(spec, model, _state_sha256(model), WeightsOrigin.RANDOM_INIT, size)
    if spec.trained_here and weights is None:
        if not weights_path:
            raise InputError(f"encoder {name!r} is trained in the warehouse by the ssl_encoder asset: "
                             "materialize it first (its weights file is then found under the warehouse root)")
        path = Path(weights_path)
        if not path.is_file():
            raise InputError(f"weights file {path} of encoder {name!r} does not exist")
        weights = WeightsInfo(path=path, sha256=sha256_file(path), origin=WeightsOrigin.SELF_SUPERVISED)
    if weights is None:
        weights = resolve_weights(spec.hf_repo, local_path=weights_path, timeout_s=timeout_s,  # type: ignore[arg-type]
                                  allow_download=allow_download)
    model = load_timm_model(spec.timm_name, weights, **spec.create_kwargs(size))
    return Encoder(spec, model, weights.sha256, weights.origin, size)


@dataclass(frozen=True)
class EncoderChoice:
    """Which encoder ``auto`` uses, and why (print it in the run summary).

    Attributes
    ----------
    name : str
        An in-domain encoder (``zoobot_*``), ``dinov2_vits14``, or ``random_vits14`` when neither
        resolves (the embeddings stage then uses the warehouse's own encoder where one is trained).
    weights : WeightsInfo or None
        The resolved weights; ``None`` when no pretrained weights resolved.
    reason : str
        One sentence for the summary.
    """

    name: str
    weights: WeightsInfo | None
    reason: str

    @property
    def is_random(self) -> bool:
        """Whether no pretrained encoder resolved."""
        return self.weights is None

    def __str__(self) -> str:
        return f"encoder {self.name}: {self.reason}"


IN_DOMAIN_DEFAULT = "zoobot_convnext_nano"
"""The in-domain encoder ``auto`` downloads when online (the one Zoobot's docs suggest starting with)."""


def _in_domain(*, allow_download: bool, timeout_s: float) -> EncoderChoice | None:
    """The first in-domain encoder whose weights are here (no network), else Zoobot's default downloaded."""
    for spec in ENCODERS.values():
        if not spec.in_domain:
            continue
        try:
            info = resolve_hub_weights(spec, allow_download=False)
        except OfflineError:
            continue
        return EncoderChoice(spec.name, info, f"in-domain weights ({spec.description}) from {info.origin} "
                                              f"({info.path}, sha256 {info.sha256[:12]})")
    if allow_download:
        spec = ENCODERS[IN_DOMAIN_DEFAULT]
        try:
            info = resolve_hub_weights(spec, allow_download=True, timeout_s=timeout_s)
        except OfflineError:
            return None
        return EncoderChoice(spec.name, info, f"in-domain weights ({spec.description}) from {info.origin} "
                                              f"({info.path}, sha256 {info.sha256[:12]})")
    return None


def choose_default_encoder(
    weights_path: str | os.PathLike[str] | None = None,
    *,
    allow_download: bool = True,
    timeout_s: float = 3.0,
) -> EncoderChoice:
    """What ``auto`` embeds with: an in-domain encoder, else DINOv2 ViT-S/14, else the random baseline.

    The order: (1) an in-domain pretrained encoder (Zoobot, :mod:`features.hub_encoders`) whose
    weights are already here (a named file, the weights directory, the Hugging Face cache), or
    ``zoobot_convnext_nano`` downloaded when online; (2) ``dinov2_vits14`` when its weights resolve
    (same places, then a download); (3) ``random_vits14``, which the embeddings stage replaces by the
    warehouse's own self-supervised encoder where one is trained (:func:`stages.embeddings.auto_encoders`).

    Parameters
    ----------
    weights_path : path, optional
        A DINOv2 ViT-S/14 weights file; when given it must exist (an error, not a fallback) and DINOv2
        is used (no in-domain look-up).
    allow_download : bool
        Whether a download may be tried when online.
    timeout_s : float
        Reachability probe timeout.

    Returns
    -------
    EncoderChoice
        ``str(choice)`` is a line for the summary, e.g. ``"encoder random_vits14: DINOv2 weights not
        available (...); using the random-weights baseline, whose neighbours are near chance"``.
    """
    if not weights_path:
        found = _in_domain(allow_download=allow_download, timeout_s=timeout_s)
        if found is not None:
            return found
    spec = ENCODERS[DEFAULT_ENCODER]
    try:
        info = resolve_weights(spec.hf_repo, local_path=weights_path, timeout_s=timeout_s,  # type: ignore[arg-type]
                               allow_download=allow_download)
    except OfflineError as exc:
        return EncoderChoice(
            "random_vits14",
            None,
            "no in-domain (Zoobot) and no DINOv2 ViT-S/14 weights are available, so embeddings use the "
            "random-weights baseline (flag RANDOM_WEIGHTS; lookalike search is near chance). " + str(exc),
        )
    return EncoderChoice(
        DEFAULT_ENCODER, info, f"DINOv2 ViT-S/14 weights from {info.origin} ({info.path}, sha256 {info.sha256[:12]})"
    )


def preprocess(images: Sequence[np.ndarray] | np.ndarray, img_size: int = 224, *, start: int = 0,
               mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
    """Images to a normalised ``float32`` tensor ``[N, 3, img_size, img_size]`` (see module docstring).

    Parameters
    ----------
    images : sequence of arrays or an ``[N, H, W(, C)]`` array
    img_size : int
        Output side.
    start : int
        Index of the first image, used in error messages.
    mean, std : sequence of float
        The encoder's normalisation (:attr:`EncoderSpec.mean`); ONE value each gives one greyscale
        channel, the mean of the three channels (Zoobot's greyscale encoders).

    Raises
    ------
    features.errors.InputError
        An image of unusable shape or dtype, naming its index.
    """
    import torch
    import torch.nn.functional as F

    chans = len(mean)
    if len(images) == 0:
        return torch.zeros((0, chans, img_size, img_size), dtype=torch.float32)
    if isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4 and images.shape[3] == 3:
        # a stack of uint8 RGB stamps: model_input's uint8 / 255, done in torch below (same float32 values)
        groups = [(list(range(len(images))), torch.from_numpy(np.ascontiguousarray(images)))]
    else:
        arrays = [model_input(im, what=f"image {start + i}") for i, im in enumerate(images)]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, a in enumerate(arrays):
            by_shape.setdefault(a.shape, []).append(i)
        groups = [(idx, torch.from_numpy(np.stack([arrays[i] for i in idx]))) for idx in by_shape.values()]
    out = torch.empty((len(images), chans, img_size, img_size), dtype=torch.float32)
    mean_t = torch.tensor(tuple(mean), dtype=torch.float32).view(1, chans, 1, 1)
    std_t = torch.tensor(tuple(std), dtype=torch.float32).view(1, chans, 1, 1)
    for idx, batch in groups:
        x = batch.permute(0, 3, 1, 2)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        if x.shape[-2:] != (img_size, img_size):
            x = F.interpolate(x, size=(img_size, img_size), mode="bicubic", antialias=True, align_corners=False)
            x = x.clamp_(0.0, 1.0)
        if chans == 1:
            x = x.mean(dim=1, keepdim=True)
        out[idx] = (x - mean_t) / std_t
    return out


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    if old != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if old != n:
            torch.set_num_threads(old)


def embed_images(
    images: Sequence[np.ndarray] | np.ndarray,
    encoder: Encoder | str,
    batch_size: int = 32,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed galaxy stamps: CLS token and mean patch token.

    Parameters
    ----------
    images : sequence of arrays or ``[N, H, W(, C)]`` array
        RGB stamps (see :func:`preprocess` for accepted shapes and dtypes). Sizes may differ.
    encoder : Encoder or str
        A loaded encoder, or a registry name (loaded with :func:`load_encoder`).
    batch_size : int
        Images per forward pass.
    device : str, optional
        ``"cuda"`` / ``"cpu"``; default: the GPU when present.
    progress : callable, optional
        Called as ``progress(done, total)`` after each batch.

    Returns
    -------
    cls : numpy.ndarray
        ``float32 [N, D]``, the CLS token after the final LayerNorm.
    patch_mean : numpy.ndarray
        ``float32 [N, D]``, the mean over patch tokens (prefix / register tokens excluded).

    Notes
    -----
    An empty input returns two ``[0, D]`` arrays. Non-finite pixels are set to 0 (flag them with
    :func:`image_flags`); a wrongly shaped image raises :class:`features.errors.InputError` naming it.
    """
    import torch

    enc = load_encoder(encoder) if isinstance(encoder, str) else encoder
    n = len(images)
    dim = enc.dim
    cls_out = np.empty((n, dim), dtype=np.float32)
    mean_out = np.empty((n, dim), dtype=np.float32)
    if n == 0:
        return cls_out, mean_out
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = enc.model
    model.to(dev)  # type: ignore[attr-defined]
    n_prefix = int(getattr(model, "num_prefix_tokens", 1))
    with _threads(step_cores()), torch.inference_mode():
        for lo in range(0, n, batch_size):
            hi = min(n, lo + batch_size)
            chunk = images[lo:hi]
            if enc.spec.stamp == "galaxy":  # cut on the galaxy, as in its training (features.ssl.stamps)
                from features.ssl.stamps import galaxy_stamps

                chunk = galaxy_stamps(chunk, enc.img_size, threads=step_cores())[0]
            x = preprocess(chunk, enc.img_size, start=lo, mean=enc.spec.mean,
                           std=enc.spec.std).to(dev, non_blocking=True)
            tokens = model.forward_features(x)  # type: ignore[attr-defined]
            if tokens.ndim == 4:  # a CNN's [N, C, h, w] map: both outputs are its pooled head input
                pooled = pooled_features(model, tokens).float().cpu().numpy()
                cls_out[lo:hi] = pooled
                mean_out[lo:hi] = pooled
            else:
                cls_out[lo:hi] = tokens[:, 0].float().cpu().numpy()
                mean_out[lo:hi] = tokens[:, n_prefix:].float().mean(dim=1).cpu().numpy()
            if progress is not None:
                progress(hi, n)
    return cls_out, mean_out


def pooled_features(model, tokens):
    """A CNN's image vector: timm's ``forward_head(..., pre_logits=True)`` (global pool, and the head's
    norm where the family has one, as ConvNeXt does), else the global average pool."""
    if hasattr(model, "forward_head"):
        return model.forward_head(tokens, pre_logits=True)
    return tokens.mean(dim=(2, 3))


def load_image_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file (PNG/JPEG, or FITS: first image HDU) into an array for :func:`embed_images`.

    The pixels are those a folder source stores for the same file
    (:func:`features.sources.folder.read_image_file`: uint8 RGB, or float32 flux channels last), so
    :func:`embed_images` gives a query image the vector its stored copy has.

    Raises
    ------
    features.errors.InputError
        The file does not exist or cannot be decoded (the message names it).
    """
    return read_image_file(Path(path))
