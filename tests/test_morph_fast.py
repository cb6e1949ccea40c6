"""The fast statmorph against plain statmorph on the reference image, and its compiled hot paths against the code they replace."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statmorph
from astropy.io import fits
from astropy.modeling import fitting as astropy_fitting
from astropy.modeling import models as astropy_models

from features.morphometrics.fast import FastSourceMorphology
from features.morphometrics.kernels import sersic_jacobian, sersic_residual
from features.morphometrics.sersic import CompiledSersicFitter, Sersic2DWithDerivatives, analytic_sersic_fit

PARAM_NAMES = ("amplitude", "r_eff", "n", "x_0", "y_0", "ellip", "theta")


@pytest.fixture
def reference_image(shared_dir):
    """statmorph's reference galaxy (float32 image, segmap, mask), as its own test suite reads it."""
    with fits.open(shared_dir / "statmorph_reference" / "slice.fits") as hdul:
        return hdul[0].data, hdul[1].data.astype(np.int64), hdul[2].data.astype(bool)


@pytest.mark.parametrize("noise", ["gain", "weightmap"])
def test_fast_equals_plain_statmorph_on_the_reference_image(reference_image, noise):
    """Every quantity within 1e-10 relative of plain statmorph (Sersic 1e-6), the same flags and types."""
    image, segmap, mask = reference_image
    kw = {"gain": 1.0} if noise == "gain" else {"weightmap": np.full_like(image, 0.5)}
    plain = statmorph.SourceMorphology(image, segmap, 1, mask=mask, **kw)
    fast = FastSourceMorphology(image, segmap, 1, mask=mask, **kw)
    assert fast.flag == plain.flag and fast.flag_sersic == plain.flag_sersic
    for name in statmorph.statmorph._quantity_names:
        a, b = float(plain[name]), float(fast[name])
        rtol = 1e-6 if name.startswith("sersic_") else 1e-10
        assert math.isclose(a, b, rel_tol=rtol, abs_tol=1e-12), (name, a, b)
        assert type(fast[name]) is type(plain[name]), name


def _random_params(rng: np.random.Generator) -> list[float]:
    return [rng.uniform(0.5, 5), rng.uniform(3, 15), rng.uniform(0.3, 4), rng.uniform(20, 30),
            rng.uniform(20, 28), rng.uniform(0, 0.7), rng.uniform(-3, 3)]


def test_sersic_kernels_equal_astropy_and_fit_deriv():
    from scipy.special import gammaincinv

    y, x = np.mgrid[0:48, 0:52].astype(float)
    rng = np.random.default_rng(11)
    z = rng.normal(size=x.shape)
    w = rng.uniform(0.5, 2.0, size=x.shape)
    xs, ys, zs, ws = (np.ascontiguousarray(a.ravel()) for a in (x, y, z, w))
    for k in range(6):
        params = _random_params(rng)
        if k == 0:
            params[3:5] = [25.0, 24.0]  # a pixel at the centre (z = 0): position derivatives 0, as fit_deriv
        n = params[2]
        bn = gammaincinv(2.0 * n, 0.5)
        lnz, u, e = np.empty(x.size), np.empty(x.size), np.empty(x.size)
        expected = w * (astropy_models.Sersic2D.evaluate(x, y, *params) - z)
        got = sersic_residual(xs, ys, zs, ws, *params, bn, lnz, u, e, np.full(x.size, np.nan))
        np.testing.assert_allclose(got, expected.ravel(), rtol=1e-13, atol=1e-15)
        h = 1e-6 * n
        dbn = (gammaincinv(2.0 * (n + h), 0.5) - gammaincinv(2.0 * (n - h), 0.5)) / (2.0 * h)
        want = np.array([np.ravel(w * d) for d in Sersic2DWithDerivatives.fit_deriv(x, y, *params)])
        for reuse in (False, True):  # computed here, or from the residual's profile values
            jac = sersic_jacobian(xs, ys, ws, *params, bn, dbn, lnz, u, e, reuse, np.full((7, x.size), np.nan))
            assert jac.shape == want.shape == (7, x.size)
            for j in range(7):
                np.testing.assert_allclose(jac[j], want[j], rtol=1e-12, atol=1e-14 * np.max(np.abs(want[j])),
                                           err_msg=f"{PARAM_NAMES[j]}, reuse={reuse}")


def _noisy_sersic(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:60, 0:64].astype(float)
    image = astropy_models.Sersic2D(2.0, 7.0, 1.6, 31.3, 29.2, 0.3, 0.7)(x, y) + rng.normal(0, 0.05, x.shape)
    weights = np.full(x.shape, 20.0)
    weights[rng.random(x.shape) < 0.15] = 0.0  # masked pixels (statmorph gives them weight 0)
    weights[40:50, 5:20] = 0.0
    return x, y, image, weights


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_fitter_equals_astropys_on_the_weighted_pixels(seed):
    x, y, image, weights = _noisy_sersic(seed)
    init = Sersic2DWithDerivatives(1.0, 6.0, 2.5, 30.0, 30.0, 0.2, 0.5, bounds={"n": (0.01, None)})
    ours, theirs = CompiledSersicFitter(), astropy_fitting.LevMarLSQFitter()
    got = ours(init, x, y, z=image, weights=weights, maxiter=500, acc=1e-5)
    want = theirs(init, x, y, z=image, weights=weights, maxiter=500, acc=1e-5)
    np.testing.assert_allclose(got.parameters, want.parameters, rtol=1e-10)
    assert ours.fit_info["ierr"] == theirs.fit_info["ierr"] and ours.fit_info["nfev"] == theirs.fit_info["nfev"]
    assert ours.fit_info["fvec"].size == np.count_nonzero(weights)  # MINPACK saw only the weighted pixels


def test_compiled_fitter_leaves_other_fits_to_astropy():
    x, y, image, weights = _noisy_sersic(3)
    fixed = Sersic2DWithDerivatives(1.0, 6.0, 2.5, 30.0, 30.0, 0.2, 0.5, fixed={"theta": True},
                                    bounds={"n": (0.01, None)})
    got = CompiledSersicFitter()(fixed, x, y, z=image, weights=weights)
    want = astropy_fitting.LevMarLSQFitter()(fixed, x, y, z=image, weights=weights)
    np.testing.assert_array_equal(got.parameters, want.parameters)
    plain = astropy_models.Sersic2D(1.0, 6.0, 2.5, 30.0, 30.0, 0.2, 0.5, bounds={"n": (0.01, None)})  # no derivatives: finite differences
    np.testing.assert_array_equal(CompiledSersicFitter()(plain, x, y, z=image, weights=weights).parameters,
                                  astropy_fitting.LevMarLSQFitter()(plain, x, y, z=image, weights=weights).parameters)


def test_compiled_fitter_rejects_a_diverging_model_as_astropy_does():
    x, y, image, weights = _noisy_sersic(4)
    huge = Sersic2DWithDerivatives(1e307, 6.0, 2.5, 30.0, 30.0, 0.2, 0.5)
    for fitter in (astropy_fitting.LevMarLSQFitter(), CompiledSersicFitter()):
        with pytest.raises(astropy_fitting.NonFiniteValueError):
            fitter(huge, x, y, z=image, weights=weights)


def test_statmorph_sees_the_compiled_fitter_only_inside_the_block():
    with pytest.raises(RuntimeError), analytic_sersic_fit():
        assert statmorph.statmorph.fitting.LevMarLSQFitter is CompiledSersicFitter
        assert statmorph.statmorph.fitting.TRFLSQFitter is astropy_fitting.TRFLSQFitter
        raise RuntimeError("fit blew up")
    assert statmorph.statmorph.fitting is astropy_fitting


def test_asymmetry_sums_equal_the_numpy_rotation_and_sums():
    """The compiled pass gives the sums of rotate180 + np.where + np.sum (the code it replaced) to rounding."""
    from features.morphometrics.fast import circle_weights, rotate180
    from features.morphometrics.kernels import asymmetry_sums

    rng = np.random.default_rng(9)
    image = rng.normal(size=(61, 70))
    mask = rng.random(image.shape) > 0.9
    for _ in range(200):
        xc, yc, r = rng.uniform(0, 69.99), rng.uniform(0, 60.99), rng.uniform(0.5, 45)
        weights, region = circle_weights(xc, yc, r, image.shape)
        box = (region[0].start, region[0].stop, region[1].start, region[1].stop)
        sub = image[region]
        rotated = rotate180(image, xc, yc, box=box)
        w = np.where(mask[region] | (rotate180(mask, xc, yc, order=0, box=box) >= 0.5), 0.0, weights)
        diff = rotated - sub
        expected = (np.sum(w), np.sum(np.abs(sub) * w), np.sum(np.abs(diff) * w), np.sum(sub**2 * w),
                    np.sum(diff**2 * w))
        got = asymmetry_sums(image, mask, xc, yc, np.ascontiguousarray(weights), box[0], box[2], True)
        np.testing.assert_allclose(got, expected, rtol=1e-13, atol=0)
        without = asymmetry_sums(image, mask, xc, yc, np.ascontiguousarray(weights), box[0], box[2], False)
        assert without[:3] == got[:3] and without[3:] == (0.0, 0.0)


def test_the_jacobian_reuses_the_residuals_profile_values(monkeypatch):
    """After each residual, MINPACK asks for the Jacobian at the same parameters: no exp/log recomputed."""
    import features.morphometrics.sersic as sersic_module

    reused = []
    kernel = sersic_module.sersic_jacobian

    def spy(*args):
        reused.append(args[-2])
        return kernel(*args)

    monkeypatch.setattr(sersic_module, "sersic_jacobian", spy)
    x, y, image, weights = _noisy_sersic(0)
    init = Sersic2DWithDerivatives(1.0, 6.0, 2.5, 30.0, 30.0, 0.2, 0.5, bounds={"n": (0.01, None)})
    CompiledSersicFitter()(init, x, y, z=image, weights=weights, maxiter=500, acc=1e-5)
    assert len(reused) > 3 and all(reused)


def test_overlap_grids_equal_photutils():
    """The compiled exact pixel overlaps of circles and ellipses against photutils' (the values statmorph uses)."""
    from photutils.geometry import circular_overlap_grid, elliptical_overlap_grid

    from features.morphometrics.kernels import circle_overlap_grid, ellipse_overlap_grid

    rng = np.random.default_rng(21)
    for k in range(150):
        r = rng.uniform(0.2, 60) if k % 10 else rng.uniform(0.05, 0.8)  # sub-pixel radii too
        xc, yc = rng.uniform(-3, 3, size=2)
        ixmin, ixmax = int(np.floor(xc - r + 0.5)), int(np.ceil(xc + r + 0.5))
        iymin, iymax = int(np.floor(yc - r + 0.5)), int(np.ceil(yc + r + 0.5))
        edges = (ixmin - 0.5 - xc, ixmax - 0.5 - xc, iymin - 0.5 - yc, iymax - 0.5 - yc)
        nx, ny = ixmax - ixmin, iymax - iymin
        np.testing.assert_allclose(circle_overlap_grid(*edges, nx, ny, r, np.full((ny, nx), np.nan)),
                                   circular_overlap_grid(*edges, nx, ny, r, 1, 1), rtol=0, atol=1e-12)
        a = rng.uniform(0.3, 60)
        b, theta = a * rng.uniform(0.05, 1), rng.uniform(-4, 4)
        np.testing.assert_allclose(ellipse_overlap_grid(*edges, nx, ny, a, b, theta, np.full((ny, nx), np.nan)),
                                   elliptical_overlap_grid(*edges, nx, ny, a, b, theta, 1, 1), rtol=0, atol=1e-12)
    # a grid wholly inside, and one wholly outside
    assert np.all(circle_overlap_grid(-2.0, 2.0, -2.0, 2.0, 4, 4, 10.0, np.empty((4, 4))) == 1.0)
    assert np.all(ellipse_overlap_grid(20.0, 24.0, 20.0, 24.0, 4, 4, 10.0, 5.0, 0.3, np.full((4, 4), 7.0)) == 0.0)


def test_exact_elliptical_apertures_sum_as_photutils():
    """The elliptical apertures statmorph gets inside the fast block: photutils' sums to rounding, its own path
    for anything but a plain exact sum (mask, error, other methods, non-finite data)."""
    from photutils.aperture import EllipticalAnnulus, EllipticalAperture

    from features.morphometrics.fast import (
        ExactEllipticalAnnulus,
        ExactEllipticalAperture,
        fast_light_fractions,
    )

    rng = np.random.default_rng(13)
    image = rng.normal(size=(80, 90))
    for _ in range(40):
        centre = tuple(rng.uniform(-10, 95, size=2))
        a = rng.uniform(1, 60)
        b, theta = a * rng.uniform(0.1, 1), rng.uniform(-4, 4)
        pairs = ((ExactEllipticalAperture(centre, a, b, theta=theta), EllipticalAperture(centre, a, b, theta=theta)),
                 (ExactEllipticalAnnulus(centre, 0.5 * a, a, b, theta=theta),
                  EllipticalAnnulus(centre, 0.5 * a, a, b, theta=theta)))
        for ours, theirs in pairs:
            np.testing.assert_allclose(ours.do_photometry(image)[0], theirs.do_photometry(image)[0], rtol=1e-12,
                                       atol=1e-12, equal_nan=True)
            mask = image > 1.5
            np.testing.assert_array_equal(ours.do_photometry(image, mask=mask)[0], theirs.do_photometry(image, mask=mask)[0])
            np.testing.assert_array_equal(ours.do_photometry(image, method="center")[0],
                                          theirs.do_photometry(image, method="center")[0])
    with fast_light_fractions():
        assert statmorph.statmorph.EllipticalAperture is ExactEllipticalAperture
    assert statmorph.statmorph.EllipticalAperture is EllipticalAperture
    assert statmorph.statmorph.EllipticalAnnulus is EllipticalAnnulus


def test_weights_in_work_arrays_equal_fresh_ones():
    """The reused work arrays (per name, per thread) give the same weights as fresh arrays, whatever they held."""
    from photutils.aperture import EllipticalAnnulus

    from features.morphometrics.fast import circle_weights, ellipse_weights
    from features.morphometrics.kernels import work_array

    work_array("test/outer", 10_000)[:] = np.nan
    for r, r_in in ((12.5, 3.0), (30.2, None), (4.1, 2.0)):
        fresh, region = circle_weights(40.3, 38.8, r, (80, 90), r_in=r_in)
        reused, same = circle_weights(40.3, 38.8, r, (80, 90), r_in=r_in, work="test")
        assert same == region
        np.testing.assert_array_equal(reused, fresh)
        ap = EllipticalAnnulus((40.3, 38.8), 0.5 * r, r, 0.6 * r, theta=0.4)
        np.testing.assert_array_equal(ellipse_weights(ap, (80, 90), work="test")[0], ellipse_weights(ap, (80, 90))[0])
    assert work_array("test/outer", 5).base is not None  # a view of the kept array


def test_aperture_sums_equal_numpys():
    """The compiled aperture sums against the numpy expressions they replace (photutils' and statmorph's)."""
    from features.morphometrics.kernels import aperture_sum, masked_aperture_sums

    rng = np.random.default_rng(17)
    for dtype in (np.float64, np.float32):
        image = rng.normal(size=(70, 64)).astype(dtype)
        mask = rng.random(image.shape) > 0.8
        for _ in range(50):
            i0, j0 = (int(v) for v in rng.integers(0, 30, size=2))
            h, w = (int(v) for v in rng.integers(1, 35, size=2))
            full = rng.uniform(-1e-16, 1.0, size=(h + 3, w + 2))
            weights = full[1:h + 1, 2:]  # a view, as the weights cut to the array are
            sub = image[i0:i0 + h, j0:j0 + w]
            want = (sub * weights)[weights > 0].sum()
            np.testing.assert_allclose(aperture_sum(image, weights, i0, j0), want, rtol=1e-13, atol=1e-13)
            flux, area = masked_aperture_sums(image, mask, weights, i0, j0)
            np.testing.assert_allclose(flux, np.sum(sub * weights), rtol=1e-13, atol=1e-13)
            np.testing.assert_allclose(area, np.sum(np.where(mask[i0:i0 + h, j0:j0 + w], 0.0, weights)), rtol=1e-13,
                                       atol=1e-13)
    image[3, 4] = np.nan  # a non-finite pixel of zero weight is left out, as photutils does
    weights = np.ones((5, 5))
    weights[3, 4] = 0.0
    assert np.isfinite(aperture_sum(image.astype(np.float64), weights, 0, 0))


@pytest.mark.parametrize("case", ["overflow_on_a_dropped_pixel", "nan_on_a_dropped_pixel"])
def test_compiled_fitter_fails_where_astropy_fails(case: str) -> None:
    """Pixels of weight 0 are left out of the compiled fit, but astropy's residual ``w (model - z)`` still
    sees them (``0 * inf`` is NaN): a fit astropy rejects must be rejected here too, so the fast record
    stays plain statmorph's (MORPH_FAILED), not a fit plain statmorph never returns."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:60, 0:64].astype(float)
    z = Sersic2DWithDerivatives(1.0, 8, 1.5, 31, 29, 0.3, 0.7)(x, y) + rng.normal(0, 0.01, (60, 64))
    w = np.ones_like(z)
    w[29, 31] = 0.0
    if case == "overflow_on_a_dropped_pixel":  # the start explodes at the centre, which has weight 0
        start = Sersic2DWithDerivatives(1e-300, 7, 400, 31, 29, 0.3, 0.7)
    else:
        z[29, 31] = np.nan
        start = Sersic2DWithDerivatives(1.0, 8, 1.5, 31, 29, 0.3, 0.7)
    with pytest.raises(astropy_fitting.NonFiniteValueError):
        astropy_fitting.LevMarLSQFitter()(start.copy(), x, y, z, weights=w)
    with pytest.raises(astropy_fitting.NonFiniteValueError):
        CompiledSersicFitter()(start.copy(), x, y, z, weights=w)


def test_kernels_compile_without_a_cache_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """numba raises when ``cache=True`` finds no writable cache directory (read-only install, no home):
    the kernels are then compiled per process instead of failing the import."""
    import numba

    from features.morphometrics import kernels

    real = numba.njit

    def no_cache_dir(*args, cache=False, **kwargs):
        if cache:
            raise RuntimeError("cannot cache function 'f': no locator available for file 'f.py'")
        return real(*args, cache=cache, **kwargs)

    monkeypatch.setattr(numba, "njit", no_cache_dir)

    @kernels._njit()
    def twice(v: float) -> float:
        return 2.0 * v

    assert twice(1.5) == 3.0
