"""Pretrained backbones without surprises: resolve weights, or train from random init only when allowed.

Weights are found by :func:`features.weights.resolve_weights` (a user file, the Hugging Face cache, a
download when the hub is reachable). When none resolves, a model trains from random initialisation
only if the caller allowed it explicitly (the CPU demo does), and the origin recorded in the model
registry, the asset metadata and the CLI output is then :attr:`features.weights.WeightsOrigin.RANDOM_INIT`
(``"random init"``): never silently random.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from features.weights import WeightsOrigin, WeightsProvenance
from models.errors import WeightsUnavailableError

__all__ = ["Backbone", "load_backbone"]


@dataclass(frozen=True)
class Backbone:
    """A timm backbone and where its weights came from.

    Attributes
    ----------
    model : torch.nn.Module
        The timm model (``num_classes=0``: it returns pooled features).
    origin : WeightsOrigin
        ``LOCAL``, ``CACHE``, ``DOWNLOAD`` or ``RANDOM_INIT``.
    sha256 : str or None
        Of the weights file (``None`` for random init).
    """

    model: nn.Module
    origin: WeightsOrigin
    sha256: str | None = None

    @property
    def random(self) -> bool:
        """Whether the backbone is randomly initialised."""
        return self.origin.is_random

    @property
    def provenance(self) -> WeightsProvenance:
        """What the models registry records (``str()``: e.g. ``"local sha256:0123456789abcdef"``)."""
        return WeightsProvenance(self.origin, self.sha256)


def load_backbone(
    timm_name: str,
    hf_repo: str | None,
    *,
    pretrained: bool = True,
    weights_path: str | None = None,
    allow_random_init: bool = False,
    timeout_s: float = 5.0,
    **timm_kwargs: Any,
) -> Backbone:
    """Build a timm backbone with pretrained weights when they resolve.

    Parameters
    ----------
    timm_name : str
        timm architecture, e.g. ``"efficientnet_b0"``.
    hf_repo : str or None
        Hugging Face repository holding the weights, e.g. ``"timm/efficientnet_b0.ra_in1k"``; None for
        an architecture that is a random baseline by definition (allowed only with ``allow_random_init``).
    pretrained : bool
        False asks for random initialisation on purpose (tests, ablations).
    weights_path : str, optional
        A local weights file; it must exist.
    allow_random_init : bool
        Train from random init when no weights resolve, instead of raising.
    timeout_s : float
        Reachability probe timeout for a download.
    **timm_kwargs
        For :func:`timm.create_model` (``num_classes=0``, ``img_size``, ``drop_rate``...).

    Raises
    ------
    WeightsUnavailableError
        No weights resolved and ``allow_random_init`` is False; the message says how to provide them.
    """
    from features.errors import OfflineError
    from features.weights import load_timm_model, resolve_weights

    if not pretrained:
        return Backbone(load_timm_model(timm_name, None, **timm_kwargs), WeightsOrigin.RANDOM_INIT)
    if hf_repo is None:
        if not allow_random_init:
            raise WeightsUnavailableError(
                f"{timm_name} is a random-weights baseline; allow random init explicitly "
                "(config allow_random_init=true, CLI --allow-random-init) to train it"
            )
        return Backbone(load_timm_model(timm_name, None, **timm_kwargs), WeightsOrigin.RANDOM_INIT)
    try:
        info = resolve_weights(hf_repo, local_path=weights_path, timeout_s=timeout_s)
    except OfflineError as exc:
        if not allow_random_init:
            raise WeightsUnavailableError(
                f"{exc} Or allow training {timm_name} from random init explicitly "
                "(config allow_random_init=true, CLI --allow-random-init)."
            ) from None
        return Backbone(load_timm_model(timm_name, None, **timm_kwargs), WeightsOrigin.RANDOM_INIT)
    model = load_timm_model(timm_name, info, **timm_kwargs)
    return Backbone(model, info.origin, info.sha256)
