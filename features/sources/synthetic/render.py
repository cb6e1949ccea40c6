"""Render one synthetic galaxy's noiseless, unconvolved light in z, r and g from its parameters.

Smooth components (Sersic bulge, exponential disk, bar, companion) are GalSim profiles (Rowe et al.
2015) drawn by direct evaluation at pixel centres (``method="no_pixel"``: about 1 ms for 256 x 256, where
an FFT draw of a large Sersic takes tens of ms), with the central pixels of cuspy profiles re-drawn 5x
oversampled and binned so the core flux is right. Star-forming knots are GalSim ``RandomKnots`` positions
(Zhang et al. 2018). Structure that is not a GalSim profile is numpy on the same pixel grid:

* logarithmic spiral arms ``R = R0 exp(tan(p) theta)``: the disk is multiplied by
  ``1 + s taper(R) (S / <S> - 1)``, ``S = ((1 + cos psi) / 2)^k``, ``psi = m (theta - ln(R/R0) / tan p) - phi``
  in the disk plane, so the arms conserve the disk's flux. The arm sharpness is ``k = 1.5 + 7 s``, so the
  arm-to-interarm contrast ``(1 + s (1/<S> - 1)) / (1 - s)`` runs from 1.3 (``s = 0.1``) to 5
  (``s = 0.5``), the range measured in the red for normal spirals (Schweizer 1976; Elmegreen &
  Elmegreen 1984). Until 2026-11-27 ``s`` reached 0.9 at ``k = 1.5 + 4 s``, a contrast of 38: the
  interarm disk was nearly dark. That gave the demo's spirals more light inequality (Gini) than its
  bulge-dominated galaxies, which is the reverse of the observed order (Lotz et al. 2004);
* lopsided light ``1 + a cos(theta - theta_a) R / (R + h)`` for disturbed and merging systems, and
  Gaussian clumps of irregular star formation;
* tidal tails: chains of Gaussians along curved arcs leaving the primary and the companion;
* a dust lane: transmission ``exp(-tau_b G(v))`` with a Gaussian ``G`` across the minor axis and
  ``tau_b / tau_r = A_b / A_r`` (Schlafly & Finkbeiner 2011).

Each component has its own colour (bulge red, disk bluer, knots bluest), so colour gradients exist. The
PSF, noise and neighbours are added by :mod:`features.sources.synthetic.observe`.

Pixel grid: array ``[row, col]``; ``x`` is the column and ``y`` the row coordinate; the target's centre
is at ``((size - 1) / 2 + dx, (size - 1) / 2 + dy)`` pixels.
"""

from __future__ import annotations

import math
from functools import lru_cache

import galsim
import numpy as np

from features.sources.synthetic.params import EXTINCTION_COEFFS, GalaxyParams

__all__ = ["BANDS", "PXSCALE", "add_gaussians", "band_factors", "deposit_points", "render_target"]

BANDS: tuple[str, ...] = ("z", "r", "g")
"""Band of each channel, in RGB order (as DECaLS composites: R = z, G = r, B = g)."""

PXSCALE = 0.262
"""DECaLS pixel scale, arcsec per pixel."""

ZP = 22.5
"""AB zeropoint of nanomaggies: ``m = 22.5 - 2.5 log10(flux)``."""

_OVERSAMPLE = 5
_CORE_HALF = 4  # re-draw (2 * 4 + 1)^2 central pixels oversampled
_BAR_N = 0.5  # bars are Gaussian-like (Sersic n = 0.5) ellipses, close to Ferrers profiles


def band_factors(gr: float, rz: float, ebv: float) -> np.ndarray:
    """Flux in (z, r, g) per unit r-band flux for intrinsic colours ``g-r``, ``r-z`` and reddening ``E(B-V)``."""
    e_gr = (EXTINCTION_COEFFS["g"] - EXTINCTION_COEFFS["r"]) * ebv
    e_rz = (EXTINCTION_COEFFS["r"] - EXTINCTION_COEFFS["z"]) * ebv
    return np.array([10 ** (0.4 * (rz + e_rz)), 1.0, 10 ** (-0.4 * (gr + e_gr))])


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(size, dtype=np.float64)
    return idx[None, :].repeat(size, 0), idx[:, None].repeat(size, 1)


def _draw(obj: galsim.GSObject, size: int, cx: float, cy: float, core: bool) -> np.ndarray:
    """Draw a unit-flux GalSim profile centred at pixel ``(cx, cy)``; flux per pixel, pixel-centre sampled."""
    img = galsim.ImageD(size, size, scale=PXSCALE, xmin=0, ymin=0)
    obj.drawImage(image=img, method="no_pixel", center=galsim.PositionD(cx, cy))
    out = img.array
    if core:
        i0 = round(cy) - _CORE_HALF
        j0 = round(cx) - _CORE_HALF
        p = 2 * _CORE_HALF + 1
        if i0 >= 0 and j0 >= 0 and i0 + p <= size and j0 + p <= size:
            os_ = _OVERSAMPLE
            sub = galsim.ImageD(p * os_, p * os_, scale=PXSCALE / os_, xmin=0, ymin=0)
            obj.drawImage(image=sub, method="no_pixel",
                          center=galsim.PositionD((cx - j0 + 0.5) * os_ - 0.5, (cy - i0 + 0.5) * os_ - 0.5))
            out[i0:i0 + p, j0:j0 + p] = sub.array.reshape(p, os_, p, os_).sum(axis=(1, 3))
    return out


def deposit_points(img: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray) -> None:
    """Add point sources at pixel positions ``(x, y)`` with bilinear weights (flux-conserving inside the image)."""
    h, w = img.shape
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx = x - x0
    fy = y - y0
    for dy, dx, wgt in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        xi = x0 + dx
        yi = y0 + dy
        ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        np.add.at(img, (yi[ok], xi[ok]), (flux * wgt)[ok])


def add_gaussians(img: np.ndarray, x: np.ndarray, y: np.ndarray, sigma_px: np.ndarray, flux: np.ndarray,
                  q: np.ndarray | None = None, pa_rad: np.ndarray | None = None) -> None:
    """Add elliptical Gaussians (centres ``x, y`` in pixels, major-axis ``sigma_px``) on local 4-sigma windows."""
    h, w = img.shape
    n = len(x)
    q = np.ones(n) if q is None else q
    pa_rad = np.zeros(n) if pa_rad is None else pa_rad
    for k in range(n):
        s = max(float(sigma_px[k]), 0.5)
        half = math.ceil(4 * s)
        j0, j1 = max(int(x[k]) - half, 0), min(int(x[k]) + half + 2, w)
        i0, i1 = max(int(y[k]) - half, 0), min(int(y[k]) + half + 2, h)
        if j0 >= j1 or i0 >= i1:
            continue
        xx = np.arange(j0, j1) - x[k]
        yy = np.arange(i0, i1)[:, None] - y[k]
        c, sn = math.cos(pa_rad[k]), math.sin(pa_rad[k])
        u = xx * c + yy * sn
        v = (-xx * sn + yy * c) / max(q[k], 0.05)
        amp = flux[k] / (2 * math.pi * s * s * max(q[k], 0.05))
        img[i0:i1, j0:j1] += amp * np.exp(-0.5 * (u * u + v * v) / (s * s))


def _disk_plane(p: GalaxyParams, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sky offsets (arcsec) to face-on disk-plane radius and azimuth."""
    pa = math.radians(p.pa_deg)
    u = x * math.cos(pa) + y * math.sin(pa)
    v = (-x * math.sin(pa) + y * math.cos(pa)) / p.axis_ratio
    return np.hypot(u, v), np.arctan2(v, u)


def _disk_jacobian(p: GalaxyParams) -> tuple[float, float, float, float]:
    """``R(pa) diag(1, q) R(-pa)``: projects the disk plane onto the sky (symmetric, so order-agnostic)."""
    pa = math.radians(p.pa_deg)
    c, s = math.cos(pa), math.sin(pa)
    q = p.axis_ratio
    return (c * c + q * s * s, c * s * (1 - q), c * s * (1 - q), s * s + q * c * c)


@lru_cache(maxsize=16)
def _arm_mean(k: float) -> float:
    t = np.linspace(0, 2 * np.pi, 4096, endpoint=False)
    return float(np.mean(((1 + np.cos(t)) / 2) ** k))


def render_target(p: GalaxyParams, size: int, rng: np.random.Generator) -> np.ndarray:
    """The target's unconvolved, noiseless light.

    Parameters
    ----------
    p : GalaxyParams
    size : int
        Stamp size in pixels.
    rng : numpy.random.Generator
        For knot, clump and tail placement (the galaxy's own stream).

    Returns
    -------
    numpy.ndarray
        ``(3, size, size)`` float64 flux per pixel in nanomaggies, bands (z, r, g). The model's total
        r-band flux is ``10^((22.5 - p.model_mag_r) / 2.5)`` before dust and stamp truncation.
    """
    cx = (size - 1) / 2 + p.centre_dx_arcsec / PXSCALE
    cy = (size - 1) / 2 + p.centre_dy_arcsec / PXSCALE
    gx, gy = _grid(size)
    xs = (gx - cx) * PXSCALE
    ys = (gy - cy) * PXSCALE
    f_tot = 10 ** ((ZP - p.model_mag_r) / 2.5)
    bulge_col = band_factors(p.bulge_gr, p.bulge_rz, p.ebv)
    disk_col = band_factors(p.disk_gr, p.disk_rz, p.ebv)
    knot_col = band_factors(p.knot_gr, p.knot_rz, p.ebv)
    out = np.zeros((3, size, size))
    pa = p.pa_deg * galsim.degrees
    jac = _disk_jacobian(p)

    # Bulge (or the whole body of a smooth galaxy).
    f_bulge = p.bulge_to_total * f_tot
    if f_bulge > 0:
        q = p.bulge_q
        bulge = galsim.Sersic(n=p.bulge_n, half_light_radius=p.bulge_hlr_arcsec * math.sqrt(q)).shear(q=q, beta=pa)
        out += f_bulge * bulge_col[:, None, None] * _draw(bulge.withFlux(1.0), size, cx, cy, core=True)[None]

    # Disk group: smooth disk (with arms / lopsidedness), bar, knots, clumps.
    f_disk_group = (1.0 - p.bulge_to_total) * f_tot
    if f_disk_group > 0 and math.isfinite(p.disk_hlr_arcsec):
        f_bar = min(p.bar_fraction * f_tot, 0.6 * f_disk_group) if p.has_bar else 0.0
        f_knots = p.knot_fraction * f_disk_group
        f_clumps = p.irregular_fraction * f_disk_group
        f_smooth = f_disk_group - f_bar - f_knots - f_clumps
        disk = galsim.Exponential(half_light_radius=p.disk_hlr_arcsec).transform(*jac).withFlux(1.0)
        shape = _draw(disk, size, cx, cy, core=False)
        r_disk, th_disk = _disk_plane(p, xs, ys)
        modulation = np.ones_like(shape)
        arms = None
        if p.n_arms > 0:
            r_in = max(0.25 * p.disk_hlr_arcsec,
                       p.bulge_hlr_arcsec if math.isfinite(p.bulge_hlr_arcsec) else 0.0,
                       p.bar_hlr_arcsec if p.has_bar else 0.0)
            k = 1.5 + 7.0 * p.arm_strength
            psi = p.n_arms * (th_disk - np.log(np.maximum(r_disk, 1e-3) / r_in) / math.tan(math.radians(p.pitch_deg)))
            psi -= math.radians(p.arm_phase_deg)
            arms = ((1 + np.cos(psi)) / 2) ** k / _arm_mean(k)
            taper = 1 - np.exp(-((r_disk / r_in) ** 2))
            modulation = 1 + p.arm_strength * taper * (arms - 1)
        if p.asymmetry > 0:
            h = 0.6 * p.disk_hlr_arcsec
            modulation = modulation * (1 + p.asymmetry * np.cos(th_disk - math.radians(p.asymmetry_angle_deg))
                                       * r_disk / (r_disk + h))
        in_stamp = shape.sum()
        shape = shape * modulation
        shape *= in_stamp / max(shape.sum(), 1e-30)  # arms and lopsidedness redistribute, never add, light
        out += f_smooth * disk_col[:, None, None] * shape[None]

        if f_bar > 0:
            bq = p.bar_q
            bar = (galsim.Sersic(n=_BAR_N, half_light_radius=p.bar_hlr_arcsec * math.sqrt(bq))
                   .shear(q=bq, beta=(p.pa_deg + p.bar_angle_deg) * galsim.degrees)
                   .transform(*jac).withFlux(1.0))
            bar_col = 0.5 * (bulge_col + disk_col)
            out += f_bar * bar_col[:, None, None] * _draw(bar, size, cx, cy, core=False)[None]

        if f_knots > 0 and p.n_knots > 0:
            seed = int(rng.integers(1, 2**31 - 1))
            knots = galsim.RandomKnots(p.n_knots, profile=galsim.Exponential(half_light_radius=p.disk_hlr_arcsec),
                                       rng=galsim.BaseDeviate(seed))
            fu, fv = knots.points[:, 0], knots.points[:, 1]  # face-on, arcsec, disk-plane (u, v)
            wgt = np.ones(len(fu))
            if p.n_arms > 0:  # star formation follows the arms
                rr = np.hypot(fu, fv)
                th = np.arctan2(fv, fu)
                psi = p.n_arms * (th - np.log(np.maximum(rr, 1e-3) / r_in) / math.tan(math.radians(p.pitch_deg)))
                psi -= math.radians(p.arm_phase_deg)
                wgt = ((1 + np.cos(psi)) / 2) ** 4 + 0.05
            wgt = wgt * rng.lognormal(0.0, 0.4, len(fu))
            wgt /= wgt.sum()
            pa_r = math.radians(p.pa_deg)
            su, sv = fu, fv * p.axis_ratio
            kx = cx + (su * math.cos(pa_r) - sv * math.sin(pa_r)) / PXSCALE
            ky = cy + (su * math.sin(pa_r) + sv * math.cos(pa_r)) / PXSCALE
            for b in range(3):
                deposit_points(out[b], kx, ky, f_knots * knot_col[b] * wgt)

        if f_clumps > 0 and p.n_clumps > 0:
            n = p.n_clumps
            rad = p.disk_hlr_arcsec * rng.uniform(0.3, 1.6, n)
            ang = rng.uniform(0, 2 * np.pi, n)
            # clumps pile up on the lopsided side
            ang = ang + 0.5 * np.sin(ang - math.radians(p.asymmetry_angle_deg))
            fu, fv = rad * np.cos(ang), rad * np.sin(ang) * p.axis_ratio
            pa_r = math.radians(p.pa_deg)
            kx = cx + (fu * math.cos(pa_r) - fv * math.sin(pa_r)) / PXSCALE
            ky = cy + (fu * math.sin(pa_r) + fv * math.cos(pa_r)) / PXSCALE
            sig = p.disk_hlr_arcsec * rng.uniform(0.15, 0.45, n) / PXSCALE
            wgt = rng.uniform(0.5, 1.5, n)
            wgt /= wgt.sum()
            clump_col = 0.5 * (disk_col + knot_col)
            qs = rng.uniform(0.4, 1.0, n)
            pas = rng.uniform(0, np.pi, n)
            for b in range(3):
                add_gaussians(out[b], kx, ky, sig, f_clumps * clump_col[b] * wgt, qs, pas)

    if p.has_dust_lane:
        pa_r = math.radians(p.pa_deg)
        u = xs * math.cos(pa_r) + ys * math.sin(pa_r)
        v = -xs * math.sin(pa_r) + ys * math.cos(pa_r)
        width = max(0.35 * p.axis_ratio * p.disk_hlr_arcsec, 0.4)
        offset = 0.8 * width * math.cos(math.radians(p.inclination_deg)) / math.cos(math.radians(78.0))
        lane = np.exp(-0.5 * ((v - offset) / width) ** 2) * np.exp(-0.5 * (u / (2.5 * p.disk_hlr_arcsec)) ** 2)
        for b, band in enumerate(BANDS):
            tau = p.dust_tau_r * EXTINCTION_COEFFS[band] / EXTINCTION_COEFFS["r"]
            out[b] *= np.exp(-tau * lane)

    if p.is_merger:
        _add_companion_and_tails(out, p, size, cx, cy, f_tot, bulge_col, disk_col, rng)
    return out


def _add_companion_and_tails(out: np.ndarray, p: GalaxyParams, size: int, cx: float, cy: float, f_tot: float,
                             bulge_col: np.ndarray, disk_col: np.ndarray, rng: np.random.Generator) -> None:
    """Companion galaxy plus one tidal tail from each galaxy, curving the same way (an antennae-like pair)."""
    ang = math.radians(p.companion_angle_deg)
    sep_px = min(p.companion_sep_arcsec / PXSCALE, 0.33 * size)
    ccx, ccy = cx + sep_px * math.cos(ang), cy + sep_px * math.sin(ang)
    q = p.companion_q
    comp = (galsim.Sersic(n=p.companion_n, half_light_radius=p.companion_hlr_arcsec * math.sqrt(q))
            .shear(q=q, beta=p.companion_pa_deg * galsim.degrees).withFlux(1.0))
    comp_col = bulge_col if p.companion_n > 2.5 else disk_col
    out += p.companion_flux_ratio * f_tot * comp_col[:, None, None] * _draw(comp, size, ccx, ccy, core=True)[None]

    f_tails = p.tail_fraction * f_tot
    sense = 1.0 if rng.uniform() < 0.5 else -1.0
    n_pts = 40
    t = np.linspace(0.0, 1.0, n_pts)
    for k, (x0, y0, scale) in enumerate(((cx, cy, 1.0), (ccx, ccy, 0.7))):
        base = ang + (0.0 if k == 0 else math.pi) + math.pi + rng.uniform(-0.6, 0.6)  # leave away from the partner
        length = sep_px * rng.uniform(1.2, 2.2) * scale
        sweep = rng.uniform(0.8, 1.8) * sense
        r = length * (0.25 + t)
        th = base + sweep * t
        px = x0 + r * np.cos(th)
        py = y0 + r * np.sin(th)
        sig = length * (0.04 + 0.08 * t)
        wgt = np.exp(-t / 0.6)
        wgt = wgt / wgt.sum() * (0.6 if k == 0 else 0.4)
        for b in range(3):
            add_gaussians(out[b], px, py, sig, f_tails * disk_col[b] * wgt)
