"""The 2-D Sersic profile with analytic derivatives, so statmorph's Levenberg-Marquardt fit needs fewer evaluations.

statmorph 0.7.2 fits ``astropy.modeling.models.Sersic2D`` (Sersic 1963; Graham & Driver 2005) with
``LevMarLSQFitter``. ``Sersic2D`` has no ``fit_deriv``, so MINPACK's ``lmdif`` estimates the Jacobian by
forward differences: 8 evaluations of the model over the whole stamp per iteration (7 parameters + 1).
:class:`Sersic2DWithDerivatives` adds the partial derivatives, so ``lmder`` needs one model evaluation
and one Jacobian (~3.3 evaluations' worth of arithmetic) per iteration: the fit is ~1.4x faster and ends
on the same parameters to ~1e-7 relative (the iterations are the same; only the Jacobian's rounding
differs). The model values themselves are astropy's (``evaluate`` is inherited).

:class:`CompiledSersicFitter` (the ``LevMarLSQFitter`` statmorph gets inside :func:`analytic_sersic_fit`)
then hands MINPACK only the pixels of non-zero weight and computes the residual and the Jacobian in
compiled loops (:mod:`features.morphometrics.kernels`), the Jacobian reusing the residual's ``exp`` and
``log``: ~2x faster again per fit, parameters within ~1e-13 of the numpy path; what is left is
MINPACK's own QR of the ``m x 7`` Jacobian per iteration.

With ``I = A exp(-b_n (z^(1/n) - 1))``, ``z^2 = (x_maj / r_e)^2 + (x_min / ((1 - e) r_e))^2``, and
``b_n`` from ``gammaincinv(2n, 1/2)`` (its derivative in ``n`` by a central difference):

* ``dI/dA = I / A``; ``dI/dn = I (b_n z^(1/n) ln z / n^2 - b_n' (z^(1/n) - 1))``;
* ``dI/dz = -I b_n z^(1/n) / (n z)``, and ``z`` depends on ``r_e``, ``e``, ``x_0``, ``y_0`` and ``theta``
  through the rotated, scaled offsets (chain rule below).

Where the profile underflows (``I = 0``) or at ``z = 0`` (the centre, where the position derivatives are
singular for ``n < 1``) the derivatives are set to 0.

References
----------
Sersic, J. L. 1963, BAAA 6, 41. Graham, A. W. & Driver, S. P. 2005, PASA 22, 118.
More, J. J. 1978, "The Levenberg-Marquardt algorithm: implementation and theory" (MINPACK ``lmder``).
"""

from __future__ import annotations

import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import statmorph
from astropy.modeling import fitting, models
from scipy.special import gammaincinv

from features.morphometrics.kernels import sersic_jacobian, sersic_residual, work_array

__all__ = ["CompiledSersicFitter", "Sersic2DWithDerivatives", "analytic_sersic_fit"]


def _bn(n: float) -> tuple[float, float]:
    """``b_n = gammaincinv(2 n, 1/2)`` and its derivative in ``n`` (central difference, step ``1e-6 n``)."""
    h = 1e-6 * n
    dbn = (gammaincinv(2.0 * (n + h), 0.5) - gammaincinv(2.0 * (n - h), 0.5)) / (2.0 * h)
    return float(gammaincinv(2.0 * n, 0.5)), float(dbn)


class Sersic2DWithDerivatives(models.Sersic2D):
    """``astropy.modeling.models.Sersic2D`` plus ``fit_deriv`` (same parameters; ``evaluate`` is astropy's)."""

    @staticmethod
    def fit_deriv(x, y, amplitude, r_eff, n, x_0, y_0, ellip, theta):
        """Partial derivatives of the profile in parameter order (amplitude, r_eff, n, x_0, y_0, ellip, theta)."""
        amplitude, r_eff, n, x_0, y_0, ellip, theta = (
            float(np.squeeze(v)) for v in (amplitude, r_eff, n, x_0, y_0, ellip, theta))
        bn, dbn = _bn(n)
        c, s = np.cos(theta), np.sin(theta)
        b = (1.0 - ellip) * r_eff
        with np.errstate(all="ignore"):
            dx = x - x_0
            dy = y - y_0
            p = dx * (c / r_eff)
            p += dy * (s / r_eff)  # x_maj / r_eff
            q = dx * (-s / b)
            q += dy * (c / b)  # x_min / b
            z2 = p * p
            z2 += q * q
            centre = z2 == 0
            lnz = 0.5 * np.log(np.where(centre, 1.0, z2))
            u = np.exp(lnz / n)  # z ** (1 / n)
            u[centre] = 0.0
            e = np.exp(-bn * (u - 1.0))
            i = amplitude * e
            g = i * u
            g *= -bn / n
            g /= z2 + centre  # (dI/dz) / z
            d_n = (u * lnz) * (bn / n**2) - dbn * (u - 1.0)
            d_n *= i
            d_r = g * z2
            d_r *= -1.0 / r_eff  # dz/dr_e = -z / r_e
            d_e = g * (q * q) * (1.0 / (1.0 - ellip))  # dz/de = (x_min / b)^2 / ((1 - e) z)
            d_x0 = g * (p * (-c / r_eff) + q * (s / b))
            d_y0 = g * (p * (-s / r_eff) - q * (c / b))
            d_t = g * (p * q) * (b / r_eff - r_eff / b)  # dz/dtheta = x_maj x_min (1/r_e^2 - 1/b^2) / z
        out = [e, d_r, d_n, d_x0, d_y0, d_e, d_t]
        for d in out:
            d[~np.isfinite(d)] = 0.0
        return out


class CompiledSersicFitter(fitting.LevMarLSQFitter):
    """astropy's ``LevMarLSQFitter`` with the Sersic residual and Jacobian from compiled loops, on the pixels that count.

    For a :class:`Sersic2DWithDerivatives` without fixed or tied parameters and a data array with weights:

    * The pixels of weight 0 are left out before MINPACK sees them. statmorph gives weight 0 to every
      masked pixel and every pixel of value 0 (``fit_weights``); such a pixel's residual and Jacobian
      row are exactly 0, and MINPACK's norms, Householder sums and ``Q^T f`` add those zeros without
      changing a bit (only a zero row among the first 7, where the Householder diagonals sit, would
      round differently). 8-20 % of a ring stamp's pixels are masked.
    * The residual ``w (model - z)`` and the weighted Jacobian come from one compiled pass each
      (:mod:`features.morphometrics.kernels`), written straight into the arrays MINPACK reads, instead
      of astropy's evaluation, ``fit_deriv``'s temporaries and ``_wrap_deriv``'s three copies. The
      Jacobian reuses the residual's ``ln z``, ``z^(1/n)`` and exponential when MINPACK asks for it at
      the parameters of the last residual (after every accepted step), so it evaluates no ``exp``/``log``.
      Both write into reused work arrays (:func:`~features.morphometrics.kernels.work_array`; MINPACK
      copies what it is given), so no call pays fresh pages.

    Everything else is astropy's and scipy's: the bounds (``n >= 0.01`` clamps the residual's
    parameters, not the Jacobian's, as in astropy), ``leastsq``'s arguments, the non-finite check, the
    returned model and ``fit_info``. Any other model or call goes to astropy unchanged.
    """

    _dropped: tuple[np.ndarray, np.ndarray] | None = None
    """``x`` and ``y`` of the pixels of weight 0 left out of the current fit (set by ``__call__``)."""

    def __call__(self, model, x, y, z=None, weights=None, **kwargs):
        """Fit ``model``; for the Sersic case described in the class docstring, on the weighted pixels only."""
        self._dropped = None
        if self._compiled(model) and z is not None and weights is not None and np.shape(weights) == np.shape(z):
            keep = np.ravel(weights) != 0
            dropped = [np.ravel(np.broadcast_to(a, np.shape(z)))[~keep] for a in (x, y, z)]
            # astropy's residual is w * (model - z) on every pixel: a non-finite z there makes it NaN (0 * inf)
            # and the fit fail, so such data is left to astropy whole, to fail the same way
            if all(np.isfinite(d).all() for d in dropped):
                self._dropped = (dropped[0].astype(np.float64), dropped[1].astype(np.float64))
                x, y, z, weights = (np.ascontiguousarray(np.ravel(a)[keep], dtype=np.float64)
                                    for a in (x, y, z, weights))
        return super().__call__(model, x, y, z, weights=weights, **kwargs)

    def _dropped_model_finite(self, values: tuple[float, ...], bn: float) -> bool:
        """Whether the model is finite on the pixels left out (where astropy's residual is ``0 * (model - z)``).

        The profile is at most ``amplitude * exp(b_n)`` (at the centre), so with finite parameters,
        ``r_eff > 0`` and ``0 <= ellip < 1`` it is finite everywhere; otherwise the left-out pixels are
        evaluated (rare: Levenberg-Marquardt exploring huge ``n`` or a degenerate ellipse).
        """
        if not self._dropped or self._dropped[0].size == 0:
            return True
        amplitude, r_eff, _, _, _, ellip, _ = values
        with np.errstate(over="ignore", invalid="ignore"):
            peak = abs(amplitude) * np.exp(bn)
        if np.isfinite(values).all() and np.isfinite(peak) and r_eff > 0 and 0 <= ellip < 1:
            return True
        with np.errstate(all="ignore"):
            return bool(np.isfinite(Sersic2DWithDerivatives.evaluate(*self._dropped, *values)).all())

    @staticmethod
    def _compiled(model) -> bool:
        return isinstance(model, Sersic2DWithDerivatives) and not (model.has_fixed or model.has_tied)

    def objective_function(self, fps, *args, fit_param_indices=None):
        """``weights * (model(x, y) - z)`` raveled, from :func:`~features.morphometrics.kernels.sersic_residual`."""
        model, weights = args[0], args[1]
        if not (self._compiled(model) and len(args) == 5 and weights is not None and np.ndim(weights) == 1):
            return super().objective_function(fps, *args, fit_param_indices=fit_param_indices)
        x, y, z = args[2:]
        params = fitting.fitter_to_model_params_array(model, fps, self._use_min_max_bounds,
                                                      fit_param_indices=fit_param_indices)
        values = tuple(float(v) for v in params)
        m = x.size
        lnz, u, e = (work_array(f"sersic/{name}", m) for name in ("lnz", "u", "e"))
        bn = float(gammaincinv(2.0 * values[2], 0.5))
        value = sersic_residual(x, y, z, weights, *values, bn, lnz, u, e, work_array("sersic/residual", m))
        self._last_profile = (values, x, lnz, u, e)
        if not (np.all(np.isfinite(value)) and self._dropped_model_finite(values, bn)):
            raise fitting.NonFiniteValueError(
                "Objective function has encountered a non-finite value, this will cause the fit to fail!")
        return value

    def _wrap_deriv(self, params, model, weights, x, y, z=None, fit_param_indices=None):
        """The weighted ``(7, m)`` Jacobian at the fitter's (unclamped) parameters, as astropy's ``_wrap_deriv``.

        A method, not astropy's staticmethod (astropy passes ``self._wrap_deriv`` to ``leastsq``), so it
        can reuse the profile values of the last residual when that was at the same parameters and pixels.
        """
        if not (self._compiled(model) and weights is not None and np.ndim(weights) == 1):
            return fitting.LevMarLSQFitter._wrap_deriv(params, model, weights, x, y, z,
                                                       fit_param_indices=fit_param_indices)
        values = tuple(float(v) for v in params)
        last = getattr(self, "_last_profile", None)
        reuse = last is not None and last[0] == values and last[1] is x
        lnz, u, e = last[2:] if reuse else (np.empty(0), np.empty(0), np.empty(0))
        bn, dbn = _bn(values[2])
        out = work_array("sersic/jacobian", 7 * x.size).reshape(7, x.size)
        return sersic_jacobian(x, y, weights, *values, bn, dbn, lnz, u, e, reuse, out)


class _FittingWithCompiledSersic(types.ModuleType):
    """``astropy.modeling.fitting`` as statmorph sees it, with ``LevMarLSQFitter`` replaced."""

    LevMarLSQFitter = CompiledSersicFitter

    def __getattr__(self, name: str):
        return getattr(fitting, name)


class _ModelsWithDerivatives(types.ModuleType):
    """``astropy.modeling.models`` as statmorph sees it, with ``Sersic2D`` replaced."""

    Sersic2D = Sersic2DWithDerivatives

    def __getattr__(self, name: str):
        return getattr(models, name)


_MODELS = _ModelsWithDerivatives("astropy.modeling.models (Sersic2D with derivatives)")
_FITTING = _FittingWithCompiledSersic("astropy.modeling.fitting (compiled Sersic fitter)")
_LOCK = threading.Lock()


@contextmanager
def analytic_sersic_fit() -> Iterator[None]:
    """Within the block, statmorph's single-Sersic fit uses :class:`Sersic2DWithDerivatives` and :class:`CompiledSersicFitter`.

    statmorph builds its model and fitter from its module's ``models`` and ``fitting`` names; this swaps
    those names for the block (under a lock, so concurrent fits in threads take turns) and restores them after. Only
    :class:`~features.morphometrics.fast.FastSourceMorphology` enters it, for the statmorph versions it
    is verified against, and only for the unconvolved model (``ConvolvedSersic2D`` has no derivatives).
    """
    module = statmorph.statmorph
    with _LOCK:
        saved = module.models, module.fitting
        module.models, module.fitting = _MODELS, _FITTING
        try:
            yield
        finally:
            module.models, module.fitting = saved
