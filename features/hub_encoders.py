"""Encoders from the Hugging Face Hub or timm: Zoobot's family by name, any ``hf_hub:<repo>`` or ``timm:<model>``.

Zoobot (Walmsley et al. 2023, "Zoobot: adaptable deep learning models for galaxy morphology", JOSS 8,
5312; the encoders of "Scaling Laws for Galaxy Images", trained on GZ Evo: 820k galaxies, 100M+
volunteer votes from every Galaxy Zoo campaign) publishes its encoders as timm models on the Hub
(``mwalmsley/zoobot-encoder-<architecture>``, model cards: "use this like any timm encoder:
``timm.create_model('hf_hub:mwalmsley/zoobot-encoder-...', pretrained=True, num_classes=0)``"). They
are registered here by name (``zoobot_convnext_nano``, ...), all 224 px, as Zoobot trains them:

- colour encoders: 3 channels, pixels scaled to [0, 1] and NOT ImageNet-normalised (Zoobot's own
  transforms stop at ``ToFloat``; mean 0, std 1 here);
- greyscale encoders (``zoobot_greyscale_*``, Zoobot 2.0.1): ONE channel (``in_chans=1``), the mean
  of the three composite channels, in [0, 1].

Other names:

- ``hf_hub:<owner>/<repo>``: any timm model published in the Hub layout (``config.json`` +
  ``model.safetensors`` or ``pytorch_model.bin``); its architecture, ``model_args``, input size,
  channels and mean / std come from its ``config.json``. Its table is ``embeddings_hf_<repo slug>``
  (``hf_hub:mwalmsley/zoobot-encoder-convnext_nano`` IS ``zoobot_convnext_nano``).
- ``timm:<model>`` (e.g. ``timm:resnet18.a1_in1k``): a timm model with its pretrained tag, weights
  from ``timm/<model>`` on the Hub; table ``embeddings_timm_<slug>``.

Weights are found by the same resolver as DINOv2 (:func:`features.weights.resolve_weights`: a file
you pass, ``ASTROVISION_WEIGHTS_<NAME>``, ``$ASTROVISION_WEIGHTS_DIR/<owner>/<repo>/``, the Hugging
Face cache, a download when online), trying ``model.safetensors`` then ``pytorch_model.bin``; the
SHA-256 of the file loaded is recorded. timm builds the model and loads that exact file
(``timm.create_model(architecture, pretrained=True, num_classes=0,
pretrained_cfg_overlay=dict(file=...))``), so its checkpoint filters and channel handling apply.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from features.encoder_spec import UNIT_MEAN, UNIT_STD, EncoderSpec
from features.errors import InputError, OfflineError
from features.weights import WeightsInfo, checkpoint_filter, resolve_weights

__all__ = ["HUB_PREFIX", "TIMM_PREFIX", "WEIGHT_FILES", "ZOOBOT_ENCODERS", "build_hub_model", "hub_config",
           "hub_spec", "resolve_hub_weights"]

HUB_PREFIX = "hf_hub:"
TIMM_PREFIX = "timm:"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
"""The weight files of a Hub repository in timm's layout, in the order timm itself prefers them."""

_ZOOBOT_COLOUR = (  # (architecture, width): the Zoobot docs' table of models with a Hub link and a timm name
    ("convnext_pico", 512), ("convnext_nano", 640), ("convnext_tiny", 768), ("convnext_small", 768),
    ("convnext_base", 1024), ("convnext_large", 1536), ("maxvit_rmlp_small_rw_224", 768), ("resnet18", 512), ("resnet50", 2048), ("resnet101", 2048),
)
_ZOOBOT_GREY = (("convnext_pico", 512), ("convnext_nano", 640))


def _zoobot(arch: str, dim: int, grey: bool) -> EncoderSpec:
    kind = "greyscale-" if grey else ""
    return EncoderSpec(
        f"zoobot_{kind.replace('-', '_')}{arch}", arch, f"mwalmsley/zoobot-encoder-{kind}{arch}", dim, img_size=224,
        description=f"Zoobot {'greyscale ' if grey else ''}{arch} (Walmsley et al. 2023), pretrained on GZ Evo "
                    "(820k galaxies, 100M+ Galaxy Zoo votes)",
        mean=UNIT_MEAN[:1] if grey else UNIT_MEAN, std=UNIT_STD[:1] if grey else UNIT_STD,
        in_chans=1 if grey else 3, hub=True, in_domain=True,
    )


ZOOBOT_ENCODERS: tuple[EncoderSpec, ...] = tuple(
    [_zoobot(a, d, False) for a, d in _ZOOBOT_COLOUR] + [_zoobot(a, d, True) for a, d in _ZOOBOT_GREY])
"""Zoobot's encoders with weights on the Hub (``zoobot_convnext_nano`` first in ``auto``'s order)."""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def hub_spec(name: str, registered: dict[str, EncoderSpec]) -> EncoderSpec | None:
    """The spec of an ``hf_hub:<repo>`` or ``timm:<model>`` name (None for any other name).

    A repository that a registered encoder uses gives that encoder (same table). The width is 0 until
    the model is built (:func:`build_hub_model` fills it in).

    Raises
    ------
    features.errors.InputError
        A malformed repository or model name.
    """
    if name.startswith(HUB_PREFIX):
        repo = name[len(HUB_PREFIX):]
        if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repo):
            raise InputError(f"encoder {name!r}: expected hf_hub:<owner>/<repository>")
        for spec in registered.values():
            if spec.hf_repo == repo:
                return spec
        return EncoderSpec(f"hf_{_slug(repo)}", "", repo, 0, img_size=224, hub=True, source=name,
                           description=f"timm model hf_hub:{repo} from the Hugging Face Hub")
    if name.startswith(TIMM_PREFIX):
        model = name[len(TIMM_PREFIX):]
        arch, _, tag = model.partition(".")
        import timm

        if not timm.is_model(arch):
            raise InputError(f"encoder {name!r}: timm has no model {arch!r}")
        cfg = timm.models.get_pretrained_cfg(model) if tag else None
        repo = (getattr(cfg, "hf_hub_id", None) if cfg else None) or f"timm/{model}"
        return EncoderSpec(f"timm_{_slug(model)}", arch, repo, 0, img_size=224, hub=True, source=name,
                           description=f"timm {model}, weights {repo} from the Hugging Face Hub")
    return None


def resolve_hub_weights(spec: EncoderSpec, weights_path: str | os.PathLike[str] | None = None, *,
                        allow_download: bool = True, timeout_s: float = 5.0) -> WeightsInfo:
    """The weights file of a Hub encoder: ``model.safetensors``, else ``pytorch_model.bin``.

    Each file goes through :func:`features.weights.resolve_weights` (a named file, the environment
    variable, the weights directory, the Hugging Face cache) without the network first; only when
    neither is local is a download tried, in the same order.

    Raises
    ------
    features.errors.OfflineError
        Neither file is local and none could be downloaded (in seconds when offline).
    """
    assert spec.hf_repo is not None
    if weights_path:
        return resolve_weights(spec.hf_repo, WEIGHT_FILES[0], local_path=weights_path)
    errors: list[OfflineError] = []
    for filename in WEIGHT_FILES:  # what is here already, before any network
        try:
            return resolve_weights(spec.hf_repo, filename, allow_download=False)
        except OfflineError as exc:
            errors.append(exc)
    if allow_download:
        for filename in WEIGHT_FILES:
            try:
                return resolve_weights(spec.hf_repo, filename, timeout_s=timeout_s, allow_download=True)
            except OfflineError as exc:
                errors.append(exc)
                if "download failed" not in str(exc):
                    break  # offline or unreachable: the other file would fail the same way
    main = [e for e in errors if WEIGHT_FILES[0] in str(e)][-1]
    raise OfflineError(f"{main} ({WEIGHT_FILES[1]}, timm's older layout, was looked for too.)")


def hub_config(spec: EncoderSpec, weights: WeightsInfo | None, *, allow_download: bool = True,
               timeout_s: float = 5.0) -> dict[str, Any] | None:
    """The repository's ``config.json`` (timm's layout), or None when a registered encoder has none here.

    Looked for beside the weights file first (a Hub snapshot or ``$ASTROVISION_WEIGHTS_DIR/<repo>/``),
    then through the resolver. A registered encoder knows its architecture, so the file is optional for
    it; an ``hf_hub:`` repository needs it.
    """
    assert spec.hf_repo is not None
    if weights is not None and (Path(weights.path).parent / "config.json").is_file():
        path = Path(weights.path).parent / "config.json"
    else:
        try:
            path = resolve_weights(spec.hf_repo, "config.json", timeout_s=timeout_s,
                                   allow_download=allow_download).path
        except OfflineError:
            if spec.timm_name:
                return None
            raise
    try:
        cfg = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"config {path} of {spec.hf_repo} is not readable JSON: {exc}") from None
    if not isinstance(cfg, dict) or not (cfg.get("architecture") or spec.timm_name):
        raise InputError(f"config {path} of {spec.hf_repo} names no timm architecture")
    return cfg


def _check_loaded(model: Any, path: Path, arch: str) -> None:
    """Every tensor of the model (its classifier aside) must be in the file timm loaded.

    timm loads non-strictly when the checkpoint's class count differs from the model's, so a file of
    another architecture would otherwise leave a silently random encoder.
    """
    from timm.models import load_state_dict

    state = load_state_dict(str(path))
    filter_fn = checkpoint_filter(model)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except TypeError:
            state = filter_fn(state)
        except (KeyError, RuntimeError, ValueError):
            pass  # the filter cannot read this layout: the key check below says what is missing
    head = model.pretrained_cfg.get("classifier") or ()
    heads = (head,) if isinstance(head, str) else tuple(head)
    own = model.state_dict()
    missing = [k for k in own if k not in state and not any(k == h or k.startswith(h + ".") for h in heads)]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        raise InputError(f"weights file {path} do not fit timm model {arch!r}: missing {missing[:5]} "
                         f"({len(missing)}), other shapes {wrong[:5]} ({len(wrong)})")


def build_hub_model(spec: EncoderSpec, weights: WeightsInfo | None, config: dict[str, Any] | None,
                    img_size: int | None = None) -> tuple[Any, EncoderSpec]:
    """timm builds the encoder (``num_classes=0``) and loads exactly ``weights`` (None: architecture only).

    Returns
    -------
    model : torch.nn.Module
        In eval mode.
    spec : EncoderSpec
        ``spec`` with the width, input size, channels and mean / std its ``config.json`` states (a
        registered Zoobot encoder keeps its documented normalisation and channels).

    Raises
    ------
    features.errors.InputError
        The file does not fit the architecture (names the file).
    """
    import timm

    cfg = config or {}
    arch = cfg.get("architecture") or spec.timm_name
    if spec.in_domain and arch != spec.timm_name:
        raise InputError(f"the config.json of {spec.hf_repo} names timm architecture {arch!r}, but {spec.name} "
                         f"is {spec.timm_name!r}: load it as hf_hub:<repo> instead")
    pretrained_cfg = dict(cfg.get("pretrained_cfg") or {})
    kwargs: dict[str, Any] = {**(cfg.get("model_args") or {}), "num_classes": 0}
    if spec.in_domain:  # documented channels (a greyscale encoder's config may not say in_chans=1)
        kwargs["in_chans"] = spec.in_chans
    in_chans = int(kwargs.get("in_chans", 3))
    size = int(img_size or (pretrained_cfg.get("input_size") or [in_chans, spec.img_size, spec.img_size])[-1])
    if arch.startswith("vit"):
        kwargs["img_size"] = size
    overlay = {**pretrained_cfg, "file": str(weights.path)} if weights is not None else None
    overlay = {k: v for k, v in (overlay or {}).items() if k not in ("source", "hf_hub_id", "url")} or None
    try:
        model = timm.create_model(arch, pretrained=weights is not None, pretrained_cfg_overlay=overlay, **kwargs)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        where = weights.path if weights is not None else f"config of {spec.hf_repo}"
        raise InputError(f"weights file {where} do not fit timm model {arch!r}: "
                         f"{' '.join(str(exc).split())[:300]}") from None
    if weights is not None:
        _check_loaded(model, Path(weights.path), arch)
    model.eval()
    if spec.in_domain:
        mean, std = spec.mean, spec.std
    else:
        mean = tuple(pretrained_cfg.get("mean") or spec.mean)[:in_chans]
        std = tuple(pretrained_cfg.get("std") or spec.std)[:in_chans]
    built = replace(spec, timm_name=arch, dim=int(model.num_features), img_size=size, in_chans=in_chans,
                    mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std))
    return model, built
