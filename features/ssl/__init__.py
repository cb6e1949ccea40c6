"""Self-supervised pretraining of an encoder on the warehouse's own galaxies (SimCLR, Chen et al. 2020).

- :mod:`features.ssl.views`: galaxy-valid augmentations (rotation, flip, scale, shift, PSF-like blur,
  noise; never colour);
- :mod:`features.ssl.simclr`: the projection head and the NT-Xent loss;
- :mod:`features.ssl.train`: the resumable, seeded training loop.

No storage and no Dagster here: :mod:`stages.ssl` reads the images, writes the weights and their record.
"""

from features.ssl.simclr import ProjectionHead, nt_xent
from features.ssl.train import SSLConfig, SSLResult, normalise, to_stamps, train_simclr
from features.ssl.views import ViewConfig, galaxy_views, gaussian_blur

__all__ = ["ProjectionHead", "SSLConfig", "SSLResult", "ViewConfig", "galaxy_views", "gaussian_blur",
           "normalise", "nt_xent", "to_stamps", "train_simclr"]
