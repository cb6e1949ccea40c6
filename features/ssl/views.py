"""Galaxy-valid augmented views for self-supervised training (batched, in torch, seeded).

A galaxy seen from another angle, at a slightly different distance or through other seeing is the same
galaxy; a galaxy of another colour is not. The views therefore change geometry, resolution and noise,
and colour only by small physically motivated factors (view 4: no hue, saturation or strong
per-channel jitter, which would erase the g-r signal that separates ellipticals from spirals; cf.
Hayat et al. 2021, ApJL 911, L33, and Stein et al. 2021, arXiv:2110.13151, who use the same family of
views for survey images):

1. **rotation** by an angle uniform in [0, 360) degrees and a **flip** with probability 1/2 (galaxies
   have no preferred orientation on the sky);
2. **scale** by a factor log-uniform in ``scale`` and a **shift** of up to ``max_shift`` of the side in
   x and y (centring and size errors of the cut-out); 1-3 are one affine resampling
   (:func:`torch.nn.functional.grid_sample`, bilinear, zeros outside the stamp: the sky floor);
3. **PSF-like blur**: a circular Gaussian of sigma uniform in ``blur_sigma`` pixels, applied to
   every channel alike (worse seeing);
4. **flux**: every channel times one factor log-uniform in ``flux_scale`` (a brighter or fainter
   galaxy), and each channel times its own ``exp(N(0, band_scale^2))`` (a per-band calibration or
   reddening change, Hayat et al. 2021), so instance discrimination cannot rest on exact colour or
   brightness while the colour's sign survives (the factors are small);
5. **noise**: additive Gaussian of sigma uniform in ``noise_sigma`` (pixel units of the ``[0, 1]``
   input), one draw per pixel and channel (a shallower exposure), then clipped to ``[0, 1]``.

With ``flux_scale=(1, 1)`` and ``band_scale=0`` view 4 is off (nothing drawn) and colour is never
changed; the defaults (0.7-1.4 and 0.1) are what ``benchmarks/bench_ssl.py real`` measured.

Inputs and outputs are ``float32 [N, 3, S, S]`` in ``[0, 1]`` (before any mean / std normalisation).
Every random draw comes from the ``torch.Generator`` passed in, so a view is a function of the
generator's state.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from features.ssl.config import ViewConfig

__all__ = ["ViewConfig", "galaxy_views", "gaussian_blur"]


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of ``x`` (``[N, C, H, W]``) with its own circular Gaussian of ``sigma[i]`` pixels.

    One separable kernel per image (radius ``ceil(3 * max(sigma))``), the same for all its channels, so
    colours are not changed; a sigma of 0 leaves the image as it is.
    """
    n, c, h, w = x.shape
    radius = max(1, math.ceil(3.0 * float(sigma.max())))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    s = sigma.clamp_min(1e-3).to(x.dtype).view(n, 1)
    k = torch.exp(-0.5 * (t.view(1, -1) / s) ** 2)
    k = k / k.sum(dim=1, keepdim=True)  # [N, K]; sigma ~0 gives the delta kernel
    k = k.repeat_interleave(c, dim=0)  # [N*C, K]: one kernel per image, same for its channels
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), k.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), k.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


def galaxy_views(x: torch.Tensor, gen: torch.Generator, config: ViewConfig | None = None) -> torch.Tensor:
    """One random galaxy-valid view of every image of ``x``.

    Parameters
    ----------
    x : torch.Tensor
        ``float32 [N, 3, S, S]`` in ``[0, 1]``.
    gen : torch.Generator
        The source of every random draw (CPU generator).
    config : ViewConfig, optional
        Default :class:`features.ssl.config.ViewConfig`.

    Returns
    -------
    torch.Tensor
        ``float32 [N, 3, S, S]`` in ``[0, 1]``; an empty batch is returned as it is.
    """
    config = config or ViewConfig()
    n = x.shape[0]
    if n == 0:
        return x
    angle = _uniform(n, 0.0, 2.0 * math.pi, gen)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    lo, hi = (math.log(v) for v in config.scale)
    zoom = torch.exp(_uniform(n, lo, hi, gen))
    shift = (torch.rand(n, 2, generator=gen) * 2.0 - 1.0) * (2.0 * config.max_shift)  # grid units span 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # output -> input sampling grid: rotate, flip x, zoom (a factor > 1 magnifies), shift
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], dim=1),
                         torch.stack([sin * flip, cos, shift[:, 1]], dim=1)], dim=1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = gaussian_blur(y, _uniform(n, *config.blur_sigma, gen))
    if config.flux_scale != (1.0, 1.0) or config.band_scale > 0:
        lo, hi = (math.log(v) for v in config.flux_scale)
        log_gain = _uniform(n, lo, hi, gen).view(n, 1) + config.band_scale * torch.randn(n, 3, generator=gen)
        y = y * torch.exp(log_gain).view(n, 3, 1, 1)
    noise = _uniform(n, *config.noise_sigma, gen).view(n, 1, 1, 1)
    y = y + noise * torch.randn(y.shape, generator=gen)
    return y.clamp_(0.0, 1.0)
