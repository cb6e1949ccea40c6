"""One synthetic galaxy, end to end: parameters, light, observation, composite, truth record.

Everything random about row ``i`` of a survey with seed ``s`` comes from ``SeedSequence([s, i])``
(three spawned streams: parameters, rendering/observation, catalogue), so a row renders byte-identically
alone or inside any range, serially or in a worker process.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from features.sources.classes import GALAXY10_CLASSES
from features.sources.synthetic.observe import (
    DEFAULT_STRETCH,
    FieldObject,
    apply_stretch,
    convolve_bands,
    draw_field,
    render_field,
)
from features.sources.synthetic.params import GalaxyParams, draw_params
from features.sources.synthetic.render import BANDS, PXSCALE, ZP, render_target

__all__ = ["TRUTH_SCHEMA", "RenderedGalaxy", "decode_mask", "encode_mask", "render_galaxy", "rng_streams"]

_F = pa.float64()
TRUTH_SCHEMA = pa.schema(
    [
        pa.field("galaxy_id", pa.string(), nullable=False),
        pa.field("label", pa.int16(), nullable=False),
        pa.field("label_name", pa.string(), nullable=False),
        pa.field("redshift", _F), pa.field("ra", _F), pa.field("dec", _F), pa.field("ebv", _F),
        pa.field("stamp_size", pa.int32(), nullable=False),
        pa.field("centre_x_px", _F), pa.field("centre_y_px", _F),
        pa.field("pa_deg", _F), pa.field("inclination_deg", _F), pa.field("axis_ratio", _F),
        pa.field("disk_q0", _F), pa.field("abs_mag_r", _F), pa.field("model_mag_r", _F),
        pa.field("bulge_to_total", _F), pa.field("bulge_n", _F), pa.field("bulge_hlr_arcsec", _F),
        pa.field("bulge_q", _F), pa.field("disk_n", _F), pa.field("disk_hlr_arcsec", _F),
        pa.field("has_bar", pa.bool_(), nullable=False), pa.field("bar_n", _F), pa.field("bar_hlr_arcsec", _F),
        pa.field("bar_q", _F), pa.field("bar_angle_deg", _F), pa.field("bar_fraction", _F),
        pa.field("n_arms", pa.int16(), nullable=False), pa.field("pitch_deg", _F), pa.field("arm_strength", _F),
        pa.field("n_knots", pa.int16(), nullable=False), pa.field("knot_fraction", _F),
        pa.field("has_dust_lane", pa.bool_(), nullable=False), pa.field("dust_tau_r", _F),
        pa.field("asymmetry", _F), pa.field("irregular_fraction", _F),
        pa.field("n_clumps", pa.int16(), nullable=False),
        pa.field("is_merger", pa.bool_(), nullable=False), pa.field("companion_flux_ratio", _F),
        pa.field("companion_sep_arcsec", _F), pa.field("companion_n", _F), pa.field("companion_hlr_arcsec", _F),
        pa.field("companion_q", _F), pa.field("tail_fraction", _F),
        pa.field("bulge_g_r", _F), pa.field("bulge_r_z", _F), pa.field("disk_g_r", _F), pa.field("disk_r_z", _F),
        pa.field("knot_g_r", _F), pa.field("knot_r_z", _F),
        pa.field("psf_fwhm_g_arcsec", _F), pa.field("psf_fwhm_r_arcsec", _F), pa.field("psf_fwhm_z_arcsec", _F),
        pa.field("psf_beta", _F),
        pa.field("sky_sigma_g", _F), pa.field("sky_sigma_r", _F), pa.field("sky_sigma_z", _F),
        pa.field("flux_g", _F), pa.field("flux_r", _F), pa.field("flux_z", _F),
        pa.field("mag_g", _F), pa.field("mag_r", _F), pa.field("mag_z", _F),
        pa.field("g_r", _F), pa.field("r_z", _F),
        pa.field("r50_arcsec", _F), pa.field("r90_arcsec", _F),
        pa.field("n_field_stars", pa.int16(), nullable=False), pa.field("n_field_galaxies", pa.int16(), nullable=False),
        pa.field("mask_threshold", _F), pa.field("mask_area_px", pa.int32(), nullable=False),
        pa.field("mask_png", pa.large_binary(), nullable=False),
    ],
    metadata={
        b"units": b"fluxes nanomaggies (AB zeropoint 22.5), magnitudes AB incl. Galactic extinction, radii arcsec "
                  b"(semi-major axis for components; circular for r50/r90), angles degrees",
        b"mask": b"PNG, mode L, 255 where the noiseless PSF-convolved target (incl. companion and tails) "
                 b"exceeds the r-band sky sigma",
    },
)
"""Columns of the ``truth`` table (the warehouse's ``warehouse/schemas/demo.py`` mirrors it)."""


@dataclass
class RenderedGalaxy:
    """A rendered galaxy with everything known about it.

    Attributes
    ----------
    row : int
    params : GalaxyParams
    rgb : numpy.ndarray
        ``(H, W, 3)`` uint8 composite, channels (z, r, g).
    flux : numpy.ndarray
        ``(H, W, 3)`` float64 observed flux (target + neighbours + noise), nanomaggies per pixel.
    target : numpy.ndarray
        ``(H, W, 3)`` float64 noiseless PSF-convolved target alone.
    mask : numpy.ndarray
        ``(H, W)`` bool: ``target[..., r] > sky_sigma_r``.
    field : list of FieldObject
        Neighbours (stars, background galaxies).
    truth : dict
        One row of :data:`TRUTH_SCHEMA`.
    """

    row: int
    params: GalaxyParams
    rgb: np.ndarray
    flux: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    field: list[FieldObject]
    truth: dict[str, Any]


def rng_streams(seed: int, row: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """The three generators of a row: parameters, rendering + observation, catalogue."""
    children = np.random.SeedSequence([int(seed), int(row)]).spawn(3)
    return tuple(np.random.default_rng(c) for c in children)  # type: ignore[return-value]


def encode_mask(mask: np.ndarray) -> bytes:
    """A boolean mask as a PNG (mode ``L``, 0 / 255)."""
    buf = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def decode_mask(png: bytes) -> np.ndarray:
    """The boolean mask stored in ``truth.mask_png``."""
    return np.asarray(Image.open(io.BytesIO(png))) > 0


def _radii(img: np.ndarray, cx: float, cy: float) -> tuple[float, float]:
    """Circular radii (arcsec) about ``(cx, cy)`` enclosing 50 % and 90 % of ``img``'s flux."""
    h, w = img.shape
    step = 0.25  # pixels: radial bins of the cumulative profile
    r = np.hypot(np.arange(w)[None, :] - cx, np.arange(h)[:, None] - cy)
    cum = np.cumsum(np.bincount((r / step).astype(np.int64).ravel(), weights=img.ravel()))
    total = cum[-1]
    if not total > 0:
        return math.nan, math.nan
    r50 = (np.searchsorted(cum, 0.5 * total) + 1) * step
    r90 = (np.searchsorted(cum, 0.9 * total) + 1) * step
    return float(r50) * PXSCALE, float(r90) * PXSCALE


def render_galaxy(seed: int, row: int, label: int, size: int, galaxy_id: str | None = None) -> RenderedGalaxy:
    """Render row ``row`` of a survey with seed ``seed`` as a Galaxy10 class ``label`` galaxy.

    Parameters
    ----------
    seed, row : int
        Seed the galaxy's generators (nothing else does).
    label : int
        Galaxy10 class 0-9.
    size : int
        Stamp size in pixels (0.262 arcsec each).
    galaxy_id : str, optional
        Stored in the truth record (default ``demo:<row:06d>``).

    Returns
    -------
    RenderedGalaxy
    """
    rng_p, rng_r, _ = rng_streams(seed, row)
    p = draw_params(label, rng_p)
    light = render_target(p, size, rng_r)
    field = draw_field(rng_r, size)
    neighbours = render_field(field, size)
    psfs = [(p.psf_fwhm_z, p.psf_beta), (p.psf_fwhm_r, p.psf_beta), (p.psf_fwhm_g, p.psf_beta)]
    conv = convolve_bands(np.stack([light, neighbours]), psfs)
    target = conv[0]
    sigma = np.array([p.sky_sigma_z, p.sky_sigma_r, p.sky_sigma_g])
    noise = rng_r.standard_normal((3, size, size), dtype=np.float32) * sigma[:, None, None]
    flux = np.moveaxis(target + conv[1] + noise, 0, -1)
    rgb = apply_stretch(flux, DEFAULT_STRETCH)
    mask = target[1] > p.sky_sigma_r
    target_hwc = np.moveaxis(target, 0, -1)
    truth = _truth_record(p, row, size, target, mask, field, galaxy_id or f"demo:{row:06d}")
    return RenderedGalaxy(row=row, params=p, rgb=rgb, flux=flux, target=target_hwc, mask=mask, field=field,
                          truth=truth)


def _mag(f: float) -> float:
    return ZP - 2.5 * math.log10(f) if f > 0 else math.nan


def _truth_record(p: GalaxyParams, row: int, size: int, target: np.ndarray, mask: np.ndarray,
                  field: list[FieldObject], galaxy_id: str) -> dict[str, Any]:
    cx = (size - 1) / 2 + p.centre_dx_arcsec / PXSCALE
    cy = (size - 1) / 2 + p.centre_dy_arcsec / PXSCALE
    fluxes = {band: float(target[b].sum()) for b, band in enumerate(BANDS)}
    mags = {band: _mag(f) for band, f in fluxes.items()}
    r50, r90 = _radii(target[1], cx, cy)
    has_disk = math.isfinite(p.disk_hlr_arcsec) and p.bulge_to_total < 1.0
    return {
        "galaxy_id": galaxy_id,
        "label": p.label,
        "label_name": GALAXY10_CLASSES[p.label],
        "redshift": p.redshift, "ra": p.ra, "dec": p.dec, "ebv": p.ebv,
        "stamp_size": size, "centre_x_px": cx, "centre_y_px": cy,
        "pa_deg": p.pa_deg, "inclination_deg": p.inclination_deg, "axis_ratio": p.axis_ratio,
        "disk_q0": p.disk_q0, "abs_mag_r": p.abs_mag_r, "model_mag_r": p.model_mag_r,
        "bulge_to_total": p.bulge_to_total, "bulge_n": p.bulge_n, "bulge_hlr_arcsec": p.bulge_hlr_arcsec,
        "bulge_q": p.bulge_q, "disk_n": 1.0 if has_disk else math.nan,
        "disk_hlr_arcsec": p.disk_hlr_arcsec if has_disk else math.nan,
        "has_bar": p.has_bar, "bar_n": 0.5 if p.has_bar else math.nan, "bar_hlr_arcsec": p.bar_hlr_arcsec,
        "bar_q": p.bar_q, "bar_angle_deg": p.bar_angle_deg, "bar_fraction": p.bar_fraction,
        "n_arms": p.n_arms, "pitch_deg": p.pitch_deg, "arm_strength": p.arm_strength,
        "n_knots": p.n_knots, "knot_fraction": p.knot_fraction,
        "has_dust_lane": p.has_dust_lane, "dust_tau_r": p.dust_tau_r,
        "asymmetry": p.asymmetry, "irregular_fraction": p.irregular_fraction, "n_clumps": p.n_clumps,
        "is_merger": p.is_merger, "companion_flux_ratio": p.companion_flux_ratio,
        "companion_sep_arcsec": p.companion_sep_arcsec, "companion_n": p.companion_n,
        "companion_hlr_arcsec": p.companion_hlr_arcsec, "companion_q": p.companion_q,
        "tail_fraction": p.tail_fraction,
        "bulge_g_r": p.bulge_gr, "bulge_r_z": p.bulge_rz, "disk_g_r": p.disk_gr, "disk_r_z": p.disk_rz,
        "knot_g_r": p.knot_gr, "knot_r_z": p.knot_rz,
        "psf_fwhm_g_arcsec": p.psf_fwhm_g, "psf_fwhm_r_arcsec": p.psf_fwhm_r, "psf_fwhm_z_arcsec": p.psf_fwhm_z,
        "psf_beta": p.psf_beta,
        "sky_sigma_g": p.sky_sigma_g, "sky_sigma_r": p.sky_sigma_r, "sky_sigma_z": p.sky_sigma_z,
        "flux_g": fluxes["g"], "flux_r": fluxes["r"], "flux_z": fluxes["z"],
        "mag_g": mags["g"], "mag_r": mags["r"], "mag_z": mags["z"],
        "g_r": mags["g"] - mags["r"], "r_z": mags["r"] - mags["z"],
        "r50_arcsec": r50, "r90_arcsec": r90,
        "n_field_stars": sum(o.kind == "star" for o in field),
        "n_field_galaxies": sum(o.kind == "galaxy" for o in field),
        "mask_threshold": p.sky_sigma_r, "mask_area_px": int(mask.sum()),
        "mask_png": encode_mask(mask),
    }
