"""Configuration of the self-supervised training (plain dataclasses: importable without torch).

:class:`ViewConfig` holds the ranges of the galaxy-valid views (:mod:`features.ssl.views`),
:class:`SSLConfig` the fixed budget and hyperparameters of :func:`models.ssl.train_simclr`;
both are saved in every checkpoint and beside the trained weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

__all__ = ["SSLConfig", "ViewConfig"]


@dataclass(frozen=True)
class ViewConfig:
    """Ranges of the random view transformations (see module docstring).

    Attributes
    ----------
    scale : (float, float)
        Range of the zoom factor (log-uniform); 1 keeps the size.
    max_shift : float
        Largest shift in x and in y, as a fraction of the side.
    blur_sigma : (float, float)
        Range of the Gaussian blur's sigma in pixels (0: none).
    noise_sigma : (float, float)
        Range of the added noise's sigma in ``[0, 1]`` pixel units.
    flux_scale : (float, float)
        Range of a factor (log-uniform) multiplying all channels alike (a brighter or fainter
        galaxy); ``(1, 1)``: none.
    band_scale : float
        Standard deviation of ``ln`` of an independent factor per channel (a per-band flux-scale /
        reddening view, Hayat et al. 2021): small, so colour is perturbed but kept; 0: none.
    """

    scale: tuple[float, float] = (0.8, 1.25)
    max_shift: float = 0.08
    blur_sigma: tuple[float, float] = (0.0, 1.2)
    noise_sigma: tuple[float, float] = (0.0, 0.04)
    flux_scale: tuple[float, float] = (0.7, 1.4)
    band_scale: float = 0.1


@dataclass(frozen=True)
class SSLConfig:
    """Hyperparameters of :func:`train_simclr` (saved in every checkpoint and beside the weights).

    Attributes
    ----------
    epochs : int
        The fixed budget: passes over the training images.
    batch_size : int
        Images per step (``2 * batch_size`` views); at least 2.
    lr : float
        Peak AdamW learning rate (cosine decay to 0 over all steps).
    weight_decay : float
    temperature : float
        NT-Xent temperature (:func:`features.ssl.simclr.nt_xent`).
    hidden_dim, proj_dim : int
        Projection head widths.
    views : ViewConfig
        The augmentations.
    seed : int
    """

    epochs: int = 20
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.2
    hidden_dim: int = 256
    proj_dim: int = 64
    views: ViewConfig = field(default_factory=ViewConfig)
    seed: int = 0

    def as_dict(self) -> dict:
        """The configuration as plain JSON-able values."""
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """SHA-256 of the whole configuration (the budget too: the learning-rate schedule depends on it)."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()
