"""Self-supervised pretraining of an encoder on the warehouse's own galaxies (SimCLR, Chen et al. 2020).

- :mod:`features.ssl.config`: the budget, hyperparameters and view ranges (no torch);
- :mod:`features.ssl.views`: galaxy-valid augmentations (rotation, flip, scale, shift, PSF-like blur,
  small flux and per-band scale factors, noise);
- :mod:`features.ssl.stamps`: the galaxy-centred, galaxy-scaled stamp the encoder sees (training and
  embedding alike);
- :mod:`features.ssl.simclr`: the projection head and the NT-Xent loss;

The resumable, seeded training (``train_simclr``) is :mod:`models.ssl`, on the one loop of every torch
model (:mod:`models.loop`).

No storage and no Dagster here: :mod:`stages.ssl` reads the images, writes the weights and their
record. The public names are imported lazily (PEP 562 ``__getattr__``, as in :mod:`models`), so
``features.ssl.config`` can be read by the Dagster definitions without importing torch.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the eager imports, for type checkers and IDEs only
    from features.ssl.config import SSLConfig, ViewConfig
    from features.ssl.simclr import ProjectionHead, nt_xent
    from features.ssl.views import galaxy_views, gaussian_blur

_SOURCES: dict[str, tuple[str, ...]] = {
    "features.ssl.config": ("SSLConfig", "ViewConfig"),
    "features.ssl.simclr": ("ProjectionHead", "nt_xent"),
    "features.ssl.views": ("galaxy_views", "gaussian_blur"),
}
_WHERE = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = ["ProjectionHead", "SSLConfig", "ViewConfig", "galaxy_views", "gaussian_blur", "nt_xent"]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'features.ssl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
