"""Finding pretrained weights without surprises, and loading them into timm models.

Pretrained weights are looked up in a fixed order, and nothing ever falls back to random weights
silently:

1. a file the user names (``local_path``; else the environment variable
   ``ASTROVISION_WEIGHTS_<NAME>``, where ``<NAME>`` is the repository's model name upper-cased with
   every non-alphanumeric character replaced by ``_``, e.g. ``ASTROVISION_WEIGHTS_VIT_SMALL_PATCH14_DINOV2_LVD142M``;
   else a weights directory ``$ASTROVISION_WEIGHTS_DIR`` holding ``<hf_repo>/<filename>`` or
   ``<model name>.safetensors`` / ``<model name>.pth``);
2. the Hugging Face cache (:func:`huggingface_hub.try_to_load_from_cache`, no network);
3. a download from the Hugging Face Hub, only when the hub is reachable (a TCP probe with a short
   timeout first, so an offline machine fails in seconds, not minutes) and ``HF_HUB_OFFLINE`` is unset.

When none of them works, :class:`features.errors.OfflineError` says which file is needed, where to get
it and where to put it. Every resolved file comes with its SHA-256, which the embeddings store next to
every vector.

Where weights came from is a :class:`WeightsOrigin` (``local``, ``cache``, ``download``, ``random init``,
``scratch``, ``self-supervised``), whose value is the text the tables store; code compares members, never substrings.
:class:`WeightsProvenance` adds the file's SHA-256 and what a model was built on (a probe: its
embeddings table), and its ``str()`` is the models registry's ``weights_origin`` text.

:func:`load_timm_model` builds a timm model and loads a ``.safetensors`` or ``.pth`` state dict in
timm's layout through timm's checkpoint filter of the model's family (so ViT position embeddings are
resampled to a new ``img_size``); a classifier of another size is left random.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlparse

from features.errors import InputError, OfflineError

__all__ = [
    "WEIGHTS_DIR_ENV",
    "WeightsInfo",
    "WeightsOrigin",
    "WeightsProvenance",
    "checkpoint_filter",
    "env_var_name",
    "hub_reachable",
    "load_timm_model",
    "resolve_weights",
    "sha256_file",
]

WEIGHTS_DIR_ENV = "ASTROVISION_WEIGHTS_DIR"
"""Environment variable naming a directory of weight files (see module docstring for the layout)."""



class WeightsOrigin(StrEnum):
    """Where a model's weights came from; the value is what the tables store.

    Attributes
    ----------
    LOCAL : ``"local"``
        A file the user named (argument, environment variable or weights directory).
    CACHE : ``"cache"``
        The Hugging Face cache.
    DOWNLOAD : ``"download"``
        Downloaded from the Hugging Face Hub in this process.
    RANDOM_INIT : ``"random init"``
        A random initialisation standing in for pretrained weights: a named random baseline
        (``random_vits14``) or a backbone whose weights did not resolve, when that was allowed. Its
        vectors carry ``Flag.RANDOM_WEIGHTS`` and its classifiers' floor failures only warn.
    SCRATCH : ``"scratch"``
        An architecture that has no pretrained weights and is trained from random init by design (the
        compact CNN); judged like any trained model.

    Notes
    -----
    ``"random"``, the value embeddings tables written before this type existed carry, reads as
    ``RANDOM_INIT``.
    """

    LOCAL = "local"
    CACHE = "cache"
    DOWNLOAD = "download"
    RANDOM_INIT = "random init"
    SCRATCH = "scratch"
    SELF_SUPERVISED = "self-supervised"

    @classmethod
    def _missing_(cls, value: object) -> WeightsOrigin | None:
        return cls.RANDOM_INIT if value == "random" else None

    @property
    def is_random(self) -> bool:
        """Whether random weights stand in for pretrained ones (``RANDOM_INIT``)."""
        return self is WeightsOrigin.RANDOM_INIT

    @classmethod
    def of_record(cls, text: str) -> WeightsOrigin:
        """The origin at the head of a stored provenance text (``str(WeightsProvenance)``).

        Raises
        ------
        ValueError
            When the text starts with no known origin.
        """
        for member in sorted(cls, key=lambda m: -len(m.value)):
            if text == member.value or text.startswith(member.value + " "):
                return member
        return cls(text)


@dataclass(frozen=True)
class WeightsProvenance:
    """The weights a model was built with, as the models registry records them.

    Attributes
    ----------
    origin : WeightsOrigin
    sha256 : str or None
        SHA-256 of the weights file (``None`` for random init or scratch).
    via : str or None
        What the model was built on when it is not a backbone of its own, e.g.
        ``"embeddings embeddings_dinov2_vits14: cache"`` for a linear probe.

    Notes
    -----
    ``str()`` gives the stored text: the origin's value, then ``sha256:<first 16 hex digits>``, then
    ``(<via>)``, e.g. ``"local sha256:0123456789abcdef"`` or
    ``"random init (embeddings embeddings_random_vits14: random init)"``.
    """

    origin: WeightsOrigin
    sha256: str | None = None
    via: str | None = None

    @property
    def is_random(self) -> bool:
        """Whether random weights stand in for pretrained ones."""
        return self.origin.is_random

    def __str__(self) -> str:
        parts = [self.origin.value]
        if self.sha256:
            parts.append(f"sha256:{self.sha256[:16]}")
        if self.via:
            parts.append(f"({self.via})")
        return " ".join(parts)

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class WeightsInfo:
    """A resolved weights file.

    Attributes
    ----------
    path : pathlib.Path
        The file (``.safetensors`` or ``.pth``).
    sha256 : str
        Hex SHA-256 of the file's bytes.
    origin : WeightsOrigin
        Where it was found: ``LOCAL`` (a user-given file: argument, environment variable or weights
        directory), ``CACHE`` (the Hugging Face cache) or ``DOWNLOAD`` (a fresh download).
    """

    path: Path
    sha256: str
    origin: WeightsOrigin


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    """SHA-256 of a file, memoised by (path, size, mtime) so a 350 MB file is hashed once per process."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    cached = _SHA_CACHE.get(key)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    with p.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    digest = h.hexdigest()
    _SHA_CACHE[key] = digest
    return digest


def _model_name(hf_repo: str) -> str:
    return hf_repo.rsplit("/", 1)[-1]


def env_var_name(hf_repo: str) -> str:
    """The environment variable that may name the weights file of ``hf_repo``.

    Examples
    --------
    >>> env_var_name("timm/vit_small_patch14_dinov2.lvd142m")
    'ASTROVISION_WEIGHTS_VIT_SMALL_PATCH14_DINOV2_LVD142M'
    """
    return "ASTROVISION_WEIGHTS_" + re.sub(r"[^A-Za-z0-9]", "_", _model_name(hf_repo)).upper()


def _offline_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_reachable(timeout_s: float = 5.0) -> bool:
    """Whether a TCP connection to the Hugging Face endpoint opens within ``timeout_s`` seconds."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _user_file(hf_repo: str, filename: str, local_path: str | os.PathLike[str] | None) -> Path | None:
    """The user-given file, or None; raises InputError for a named file that does not exist."""
    if local_path is not None and str(local_path) != "":
        p = Path(local_path).expanduser()
        if not p.is_file():
            raise InputError(f"weights file {p} does not exist (given for {hf_repo})")
        return p
    var = env_var_name(hf_repo)
    env = os.environ.get(var, "")
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise InputError(f"weights file {p} named by ${var} does not exist")
        return p
    wdir = os.environ.get(WEIGHTS_DIR_ENV, "")
    if wdir:
        base = Path(wdir).expanduser()
        name = _model_name(hf_repo)
        for cand in (base / hf_repo / filename, base / name / filename,
                     base / f"{name}.safetensors", base / f"{name}.pth"):
            if cand.is_file():
                return cand
    return None


def _how_to(hf_repo: str, filename: str) -> str:
    name = _model_name(hf_repo)
    return (
        f"download https://huggingface.co/{hf_repo}/resolve/main/{filename} on a machine with network "
        f"access, then either pass its path (--weights PATH), set ${env_var_name(hf_repo)}=PATH, put it at "
        f"${WEIGHTS_DIR_ENV}/{hf_repo}/{filename} (beside the repository's config.json, if any) or "
        f"${WEIGHTS_DIR_ENV}/{name}.safetensors, or copy the Hugging Face cache "
        f"(`huggingface-cli download {hf_repo} {filename}`) to this machine"
    )


def resolve_weights(
    hf_repo: str,
    filename: str = "model.safetensors",
    local_path: str | os.PathLike[str] | None = None,
    timeout_s: float = 5.0,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    allow_download: bool = True,
) -> WeightsInfo:
    """Find a pretrained weights file: user file, then Hugging Face cache, then download.

    Parameters
    ----------
    hf_repo : str
        Hugging Face repository, e.g. ``"timm/vit_small_patch14_dinov2.lvd142m"``.
    filename : str
        File inside the repository.
    local_path : path, optional
        A file the user gives; it must exist (no fallback when it does not).
    timeout_s : float
        Seconds allowed for the reachability probe before a download is attempted.
    cache_dir : path, optional
        Hugging Face cache directory (default: the library's, i.e. ``$HF_HUB_CACHE``).
    allow_download : bool
        When False, never touch the network (step 3 is skipped).

    Returns
    -------
    WeightsInfo

    Raises
    ------
    features.errors.InputError
        A user-named file does not exist.
    features.errors.OfflineError
        Not given, not cached, and not downloadable (offline, ``HF_HUB_OFFLINE=1``, or the hub failed);
        the message says how to get the file. Raised within about ``timeout_s`` seconds.
    """
    user = _user_file(hf_repo, filename, local_path)
    if user is not None:
        return WeightsInfo(path=user, sha256=sha256_file(user), origin=WeightsOrigin.LOCAL)

    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(hf_repo, filename, cache_dir=cache_dir)
    if isinstance(cached, str) and Path(cached).is_file():
        return WeightsInfo(path=Path(cached), sha256=sha256_file(cached), origin=WeightsOrigin.CACHE)

    if not allow_download:
        reason = "downloads are disabled"
    elif _offline_env():
        reason = "HF_HUB_OFFLINE is set"
    elif not hub_reachable(timeout_s):
        reason = f"the Hugging Face Hub is unreachable (no connection within {timeout_s:g} s)"
    else:
        from huggingface_hub import hf_hub_download

        try:
            path = hf_hub_download(hf_repo, filename, cache_dir=cache_dir, etag_timeout=timeout_s)
        except Exception as exc:  # network / HTTP errors of any kind: reported, never swallowed
            reason = f"the download failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        else:
            return WeightsInfo(path=Path(path), sha256=sha256_file(path), origin=WeightsOrigin.DOWNLOAD)
    raise OfflineError(
        f"weights {hf_repo}/{filename} are not available: not given, not in the Hugging Face cache, and "
        f"{reason}. To use them, {_how_to(hf_repo, filename)}."
    )


def _read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    import torch

    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise InputError(f"weights file {path} does not hold a state dict (got {type(obj).__name__})")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_timm_model(timm_name: str, weights: WeightsInfo | None, **timm_kwargs):
    """Create a timm model and load weights in timm's layout.

    Parameters
    ----------
    timm_name : str
        A timm model name, e.g. ``"vit_small_patch14_dinov2.lvd142m"`` or ``"efficientnet_b0"``.
    weights : WeightsInfo or None
        The file to load (``.safetensors`` or ``.pth``; a checkpoint dict with ``state_dict`` /
        ``model`` is unwrapped, ``module.`` prefixes removed). ``None`` gives timm's random
        initialisation: the caller must record it as random (``Flag.RANDOM_WEIGHTS``).
    **timm_kwargs
        Passed to :func:`timm.create_model` (``num_classes``, ``img_size``, ...).

    Returns
    -------
    torch.nn.Module
        The model in eval mode on the CPU.

    Notes
    -----
    The state dict goes through the model family's timm checkpoint filter (which converts original
    DINOv2 checkpoints and interpolates ViT position embeddings when ``img_size`` differs from the
    checkpoint's; Dosovitskiy et al. 2021, sec. 3.2). A classifier of another size than the model's
    (or none) is left out, so the model keeps its own randomly initialised head; a classifier of the
    same size is loaded. Any other mismatch (missing or unexpected keys, wrong shapes) raises
    :class:`features.errors.InputError` naming the file.
    """
    import timm

    timm_kwargs = dict(timm_kwargs)
    timm_kwargs.pop("pretrained", None)
    model = timm.create_model(timm_name, pretrained=False, **timm_kwargs)
    if weights is not None:
        path = Path(weights.path)
        state = _read_state_dict(path)
        filter_fn = checkpoint_filter(model)
        try:
            if filter_fn is not None:
                try:
                    state = filter_fn(state, model)
                except TypeError:  # filters of some families take the state dict only (as in timm)
                    state = filter_fn(state)
            head = model.pretrained_cfg.get("classifier") or ()
            heads = (head,) if isinstance(head, str) else tuple(head)
            own = model.state_dict()
            for key in list(state):
                in_head = any(key == h or key.startswith(h + ".") for h in heads)
                if in_head and (key not in own or own[key].shape != state[key].shape):
                    del state[key]  # a classifier of another size: the model keeps its own (random) head
            missing, unexpected = model.load_state_dict(state, strict=False)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise InputError(
                f"weights file {path} do not fit timm model {timm_name!r}: {' '.join(str(exc).split())[:400]}"
            ) from exc
        missing = [k for k in missing if not any(k == h or k.startswith(h + ".") for h in heads)]
        if missing or unexpected:
            raise InputError(
                f"weights file {path} do not fit timm model {timm_name!r}: missing {missing[:5]} "
                f"({len(missing)}), unexpected {list(unexpected)[:5]} ({len(unexpected)})"
            )
    model.eval()
    return model


def checkpoint_filter(model):
    """timm's checkpoint filter for the model's family (resamples ViT position embeddings)."""
    import importlib

    module = importlib.import_module(type(model).__module__)
    return getattr(module, "checkpoint_filter_fn", None)
