"""Compiled (numba) loops for the hot paths of the fast statmorph: the single-Sersic fit's residual and Jacobian.

Each kernel does in one pass over the pixels what the numpy code it replaces does in several passes with
temporaries, with the same formula and the same order of floating-point operations per pixel (no
``fastmath``, so LLVM neither reorders nor contracts them). The transcendental functions (``exp``,
``log``, ``pow``) are the C library's where numpy may use its own vectorised ones, so single values can
differ in the last bit; the callers state what that does to their results.

Compiled on first use and cached on disk (``cache=True``), so a worker process pays the compilation
(~1 s) once per installation, not once per process.

References
----------
Sersic, J. L. 1963, BAAA 6, 41. Graham, A. W. & Driver, S. P. 2005, PASA 22, 118.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["sersic_jacobian", "sersic_residual"]


@numba.njit(cache=True, error_model="numpy")
def sersic_residual(x: np.ndarray, y: np.ndarray, z: np.ndarray, w: np.ndarray, amplitude: float, r_eff: float,
                    n: float, x_0: float, y_0: float, ellip: float, theta: float, bn: float) -> np.ndarray:
    """``w * (Sersic2D(x, y) - z)``: astropy's ``Sersic2D.evaluate`` (``c = 0``) per pixel, weighted.

    The same operations as astropy 7-8: ``x_maj = |dx cos + dy sin|``, ``x_min = |-dx sin + dy cos|``,
    ``z = sqrt((x_maj / r_eff)^2 + (x_min / b)^2)`` with ``b = (1 - ellip) r_eff``, then
    ``amplitude exp(-bn (z^(1/n) - 1))``.

    Parameters
    ----------
    x, y, z, w : numpy.ndarray
        1-D float64 pixel coordinates, data and weights.
    amplitude, r_eff, n, x_0, y_0, ellip, theta : float
        The model's parameters (astropy's order).
    bn : float
        ``gammaincinv(2 n, 0.5)``.

    Returns
    -------
    numpy.ndarray
        1-D float64 weighted residuals.
    """
    cos_t = math.cos(theta)
    sin_t = math.sin(theta)
    b = (1.0 - ellip) * r_eff
    inv_n = 1.0 / n
    out = np.empty(x.size)
    for k in range(x.size):
        dx = x[k] - x_0
        dy = y[k] - y_0
        x_maj = abs(dx * cos_t + dy * sin_t)
        x_min = abs(-dx * sin_t + dy * cos_t)
        t_maj = x_maj / r_eff
        t_min = x_min / b
        zz = math.sqrt(t_maj * t_maj + t_min * t_min)
        out[k] = w[k] * (amplitude * math.exp(-bn * (zz**inv_n - 1.0)) - z[k])
    return out


@numba.njit(cache=True, error_model="numpy")
def sersic_jacobian(x: np.ndarray, y: np.ndarray, w: np.ndarray, amplitude: float, r_eff: float, n: float,
                    x_0: float, y_0: float, ellip: float, theta: float, bn: float, dbn: float) -> np.ndarray:
    """Weighted partial derivatives of the Sersic profile, ``(7, m)`` in astropy's parameter order.

    The formulas of :meth:`features.morphometrics.sersic.Sersic2DWithDerivatives.fit_deriv` (see that
    module), one pixel at a time: non-finite derivatives and the position derivatives at ``z = 0`` are
    0, then each row is multiplied by the pixel's weight, as astropy's ``_wrap_deriv`` does.

    Parameters
    ----------
    x, y, w : numpy.ndarray
        1-D float64 pixel coordinates and weights.
    amplitude, r_eff, n, x_0, y_0, ellip, theta : float
        The parameters.
    bn, dbn : float
        ``gammaincinv(2 n, 0.5)`` and its derivative in ``n``.

    Returns
    -------
    numpy.ndarray
        ``(7, m)`` float64: d/d(amplitude, r_eff, n, x_0, y_0, ellip, theta), weighted.
    """
    c = math.cos(theta)
    s = math.sin(theta)
    b = (1.0 - ellip) * r_eff
    c_r, s_r, s_b, c_b = c / r_eff, s / r_eff, s / b, c / b
    bn_n, bn_n2 = -bn / n, bn / n**2
    inv_r, inv_e = -1.0 / r_eff, 1.0 / (1.0 - ellip)
    mc_r, ms_r = -c / r_eff, -s / r_eff
    shape_t = b / r_eff - r_eff / b
    out = np.empty((7, x.size))
    d = np.empty(7)
    for k in range(x.size):
        dx = x[k] - x_0
        dy = y[k] - y_0
        p = dx * c_r
        p += dy * s_r
        q = dx * (-s_b)
        q += dy * c_b
        z2 = p * p
        z2 += q * q
        if z2 == 0.0:
            lnz = 0.0
            u = 0.0
            centre = 1.0
        else:
            lnz = 0.5 * math.log(z2)
            u = math.exp(lnz / n)
            centre = 0.0
        e = math.exp(-bn * (u - 1.0))
        i = amplitude * e
        g = i * u
        g *= bn_n
        g /= z2 + centre
        d_n = (u * lnz) * bn_n2 - dbn * (u - 1.0)
        d[0] = e
        d[1] = g * z2 * inv_r
        d[2] = d_n * i
        d[3] = g * (p * mc_r + q * s_b)
        d[4] = g * (p * ms_r - q * c_b)
        d[5] = g * (q * q) * inv_e
        d[6] = g * (p * q) * shape_t
        for j in range(7):
            v = d[j]
            out[j, k] = w[k] * (v if math.isfinite(v) else 0.0)
    return out
