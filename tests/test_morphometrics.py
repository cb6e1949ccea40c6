"""Morphometrics: statmorph reference values, the fast class against plain statmorph, theory checks,
pathological inputs (NaN + flags, the batch goes on), the process pool and its watchdog, and the asset."""

from __future__ import annotations

import json
import math
import signal
import time

import dagster as dg
import numpy as np
import pytest
import statmorph
from astropy.io import fits
from astropy.modeling import models as astropy_models
from astropy.modeling.models import Sersic2D
from scipy import ndimage as ndi
from scipy.stats import spearmanr
from skimage.transform import rotate

from features.errors import InputError
from features.flags import MORPH_UNTRUSTED, Flag, decode, morph_ok, stage_mask
from features.morphometrics import (
    QUANTITIES,
    MorphInput,
    MorphOptions,
    Plane,
    measure_batch,
    measure_image,
    measure_plane,
    measurement_plane,
    rotate180,
    run_statmorph,
)
from features.morphometrics.fast import FastSourceMorphology, morphology_class
from warehouse import schemas
from warehouse.images import encode_image
from warehouse.schemas.morphometrics import MORPH_ARCSEC_RADII, MORPH_QUANTITIES

SHARD = "demo-00000"
FAST = MorphOptions(fit_sersic=False, time_limit_s=20.0)


def sersic_stamp(n: float, *, size: int = 64, r_eff: float = 6.0, total: float = 1e4, noise: float = 0.5,
                 seed: int = 0, ellip: float = 0.2, centre: tuple[float, float] | None = None) -> np.ndarray:
    """A seeded Sersic galaxy (integrated over pixels by 5x oversampling) seen through a Gaussian PSF
    (FWHM 2.5 px), plus Gaussian noise (flux units)."""
    k = 5
    y, x = (np.mgrid[: size * k, : size * k] + 0.5) / k - 0.5
    cx, cy = centre if centre is not None else (size / 2, size / 2)
    fine = Sersic2D(amplitude=1.0, r_eff=r_eff, n=n, x_0=cx, y_0=cy, ellip=ellip, theta=0.5)(x, y)
    model = ndi.gaussian_filter(fine.reshape(size, k, size, k).mean(axis=(1, 3)), 2.5 / 2.355)
    model *= total / model.sum()
    return model + np.random.default_rng(seed).normal(0.0, noise, model.shape)


def _no_sentinels(rec: dict) -> None:
    for k, v in rec.items():
        if isinstance(v, float) and k not in ("flags",):
            assert v != -99.0, k


# --- statmorph reference -----------------------------------------------------------------------------

def test_reference_values_reproduced(shared_dir):
    ref_dir = shared_dir / "statmorph_reference"
    ref = json.loads((ref_dir / "reference_values.json").read_text())
    with fits.open(ref_dir / "slice.fits") as hdul:
        image = hdul[0].data.astype(np.float64)
        segmap = hdul[1].data.astype(np.int64)
        mask = hdul[2].data.astype(bool)
    assert morphology_class() is FastSourceMorphology  # the verified version is installed
    morph = run_statmorph(image, segmap, mask=mask, gain=1.0, include_doublesersic=True)
    bad = []
    for key, expected in ref["values"].items():
        rtol = ref["rtol"]["sersic_and_doublesersic_fits"] if "sersic" in key else ref["rtol"]["default"]
        if key.startswith("doublesersic_"):
            # An ill-conditioned fit started from the single-Sersic result, which the fast class ends 1e-8
            # away from: plain statmorph lands up to 6.7e-4 from the reference, the fast class 1.2e-3
            # (doublesersic_rhalf1). The pipeline stores no double-Sersic value.
            rtol = 2e-3
        got = float(morph[key])
        if not math.isclose(got, expected, rel_tol=rtol, abs_tol=1e-12):
            bad.append((key, got, expected))
    assert not bad, bad
    assert len(ref["values"]) == 72


# --- the fast class equals plain statmorph ---------------------------------------------------------------

def test_rotate180_matches_skimage():
    rng = np.random.default_rng(3)
    image = rng.normal(size=(37, 41))
    mask = rng.random((37, 41)) > 0.7
    for _ in range(50):
        xc, yc = rng.uniform(0, 40.99), rng.uniform(0, 36.99)
        np.testing.assert_allclose(rotate180(image, xc, yc), rotate(image, 180.0, center=(xc, yc)), atol=1e-12)
        np.testing.assert_array_equal(rotate180(mask, xc, yc, order=0) >= 0.5,
                                      rotate(mask, 180.0, center=(xc, yc)) >= 0.5)
        box = (3, 20, 5, 33)
        np.testing.assert_allclose(rotate180(image, xc, yc, box=box), rotate180(image, xc, yc)[3:20, 5:33],
                                   atol=1e-12)
    with pytest.raises(ValueError, match="outside"):
        rotate180(image, 41.5, 3.0)


def test_circle_weights_equal_photutils_masks():
    from photutils.aperture import CircularAnnulus, CircularAperture

    from features.morphometrics.fast import circle_weights

    rng = np.random.default_rng(4)
    shape = (40, 52)
    for _ in range(100):  # centres inside, near and beyond the edges; radii from sub-pixel to larger than the array
        xc, yc, r = rng.uniform(-8, 60), rng.uniform(-8, 48), rng.uniform(0.3, 45)
        r_in = r * rng.uniform(0, 0.9)
        for ap, kw in ((CircularAperture((xc, yc), r), {}), (CircularAnnulus((xc, yc), r_in, r), {"r_in": r_in})):
            m = ap.to_mask(method="exact")
            region, small = m.get_overlap_slices(shape)
            weights, got = circle_weights(xc, yc, r, shape, **kw)
            if region is None:
                assert weights is None and got is None
            else:
                assert got == region
                # the compiled exact overlap (kernels.circle_overlap_grid): photutils' values to rounding
                np.testing.assert_allclose(weights, m.data[small], rtol=0, atol=1e-12)


def test_ellipse_weights_equal_photutils_masks():
    from photutils.aperture import EllipticalAnnulus, EllipticalAperture

    from features.morphometrics.fast import ellipse_weights

    rng = np.random.default_rng(5)
    shape = (90, 110)
    for _ in range(60):  # small ellipses (photutils whole) and large ones (edge pixels only), some past the edges
        xc, yc = rng.uniform(-10, 120), rng.uniform(-10, 100)
        a = rng.uniform(1, 70)
        b, theta = a * rng.uniform(0.15, 1), rng.uniform(-4, 4)
        for ap in (EllipticalAperture((xc, yc), a, b, theta=theta),
                   EllipticalAnnulus((xc, yc), 0.6 * a, a, b, theta=theta)):
            m = ap.to_mask(method="exact")
            region, small = m.get_overlap_slices(shape)
            weights, got = ellipse_weights(ap, shape)
            if region is None:
                assert weights is None and got is None
                continue
            assert got == region
            # the compiled exact overlap (kernels.ellipse_overlap_grid): photutils' values to rounding
            np.testing.assert_allclose(weights, m.data[small], rtol=0, atol=1e-12)


def test_light_fraction_functions_equal_statmorphs():
    """The circle's and the ellipse's light fractions are statmorph's to rounding, inside and off the image."""
    from features.morphometrics.fast import _fraction_of_total_circ, _fraction_of_total_ellip

    sm = statmorph.statmorph
    image = sersic_stamp(2.0, size=64, seed=11)
    total = float(np.sum(np.abs(image)))
    for centre in ((31.7, 32.2), (3.4, 60.1), (-2.0, 30.0)):
        for r in (0.0, 0.4, 3.3, 17.9, 50.0):
            np.testing.assert_allclose(_fraction_of_total_circ(r, image, centre, 0.5, total),  # NaN off the image
                                       sm._fraction_of_total_function_circ(r, image, centre, 0.5, total),
                                       rtol=1e-12, atol=1e-14, equal_nan=True)
            mine = _fraction_of_total_ellip(r, image, centre, 1.7, 0.6, 0.2, total)
            theirs = sm._fraction_of_total_function_ellip(r, image, centre, 1.7, 0.6, 0.2, total)
            np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-14, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_equals_plain_statmorph_on_a_disturbed_galaxy(dtype):
    image = sersic_stamp(1.5, size=72, seed=5) + 0.3 * sersic_stamp(0.8, size=72, r_eff=3, centre=(44, 30), seed=6)
    image = image.astype(dtype)  # statmorph keeps some sky terms in the input's dtype: so must the fast class
    segmap = (np.abs(image) > 1.0).astype(int)
    labels, _ = ndi.label(segmap)
    segmap = (labels == labels[36, 36]).astype(int)
    kw = dict(mask=None, weightmap=np.full_like(image, 0.5))
    fast = run_statmorph(image, segmap, fast=True, **kw)
    plain = run_statmorph(image, segmap, fast=False, **kw)
    assert type(fast) is FastSourceMorphology and type(plain) is statmorph.SourceMorphology
    for name in statmorph.statmorph._quantity_names:
        a, b = float(plain[name]), float(fast[name])
        rtol = 1e-6 if name.startswith("sersic_") else 1e-10  # the stated tolerances (analytic Jacobian)
        assert math.isclose(a, b, rel_tol=rtol, abs_tol=1e-12), (name, a, b)
        assert type(fast[name]) is type(plain[name]), (name, type(fast[name]), type(plain[name]))
    assert fast.flag == plain.flag and fast.flag_sersic == plain.flag_sersic
    assert statmorph.statmorph.models is astropy_models  # the fit's model swap is undone


def test_sersic_derivatives_match_finite_differences():
    from features.morphometrics.sersic import Sersic2DWithDerivatives

    y, x = np.mgrid[0:48, 0:52].astype(float)
    rng = np.random.default_rng(7)
    for _ in range(5):
        params = [rng.uniform(0.5, 5), rng.uniform(3, 15), rng.uniform(0.4, 4), rng.uniform(20, 30),
                  rng.uniform(20, 28), rng.uniform(0, 0.7), rng.uniform(-3, 3)]
        analytic = Sersic2DWithDerivatives.fit_deriv(x, y, *params)
        np.testing.assert_array_equal(Sersic2DWithDerivatives.evaluate(x, y, *params),
                                      astropy_models.Sersic2D.evaluate(x, y, *params))
        for k, d in enumerate(analytic):
            h = 1e-6 * max(1.0, abs(params[k]))
            up, down = list(params), list(params)
            up[k] += h
            down[k] -= h
            numeric = (astropy_models.Sersic2D.evaluate(x, y, *up) - astropy_models.Sersic2D.evaluate(x, y, *down)) / (2 * h)
            scale = np.max(np.abs(numeric))
            assert np.max(np.abs(d - numeric)) <= 1e-5 * scale, k


def test_analytic_sersic_fit_restores_statmorph_after_an_error():
    from features.morphometrics.sersic import Sersic2DWithDerivatives, analytic_sersic_fit

    with pytest.raises(RuntimeError), analytic_sersic_fit():
        assert statmorph.statmorph.models.Sersic2D is Sersic2DWithDerivatives
        assert statmorph.statmorph.models.Gaussian2D is astropy_models.Gaussian2D  # everything else is astropy's
        raise RuntimeError("fit blew up")
    assert statmorph.statmorph.models is astropy_models


def test_skipping_the_sersic_fit_leaves_everything_else_unchanged():
    plane = Plane(sersic_stamp(2.0, seed=1), "r", "flux")
    with_fit = measure_plane(plane, options=MorphOptions(fit_sersic=True))
    without = measure_plane(plane, options=MorphOptions(fit_sersic=False))
    assert without["flag_sersic"] == -1 and math.isnan(without["sersic_n"]) and math.isfinite(with_fit["sersic_n"])
    for q in QUANTITIES:
        if not q.startswith("sersic_"):
            assert with_fit[q] == pytest.approx(without[q], rel=1e-12, nan_ok=True), q


# --- theory and synthetic galaxies -------------------------------------------------------------------------

def test_gini_of_a_uniform_disk_is_near_zero_and_of_a_concentrated_source_high():
    y, x = np.mgrid[:64, :64]
    disk = ((x - 32) ** 2 + (y - 32) ** 2 < 15**2) * 100.0 + np.random.default_rng(0).normal(0, 1, (64, 64))
    flat = measure_plane(Plane(disk, "r", "flux"), options=FAST)
    peaked = measure_plane(Plane(sersic_stamp(4.0, seed=2), "r", "flux"), options=FAST)
    assert 0.0 <= flat["gini"] < 0.1  # every pixel equal: Gini 0 (Lotz et al. 2004), noise adds a little
    assert peaked["gini"] > 0.55  # de Vaucouleurs profiles: Gini ~0.6 (Lotz et al. 2004, fig. 4)
    assert peaked["m20"] < flat["m20"] < 0  # light concentrated in a nucleus: more negative M20


def test_concentration_gini_and_sersic_n_rise_with_sersic_index():
    ns = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0]
    psf = np.zeros((15, 15))
    psf[7, 7] = 1.0
    psf = ndi.gaussian_filter(psf, 2.5 / 2.355)  # the PSF sersic_stamp applies, for the Sersic fit
    recs = [measure_plane(Plane(sersic_stamp(n, seed=10 + i), "r", "flux"), pxscale=0.262, psf=psf / psf.sum(),
                          options=MorphOptions(time_limit_s=20.0)) for i, n in enumerate(ns)]
    assert all(r["flags"] & ~int(Flag.MORPH_STATMORPH_FLAG) == 0 and r["statmorph_flag"] <= 1 for r in recs), [
        (r["flags"], r["statmorph_flag"]) for r in recs]
    for q in ("concentration", "gini", "sersic_n"):
        rho = spearmanr(ns, [r[q] for r in recs])[0]
        assert rho >= 0.9, (q, rho)
    assert recs[1]["sersic_n"] == pytest.approx(1.0, abs=0.15), [r["sersic_n"] for r in recs]
    assert recs[0]["r50_arcsec"] == pytest.approx(recs[0]["r50"] * 0.262)


# --- inputs --------------------------------------------------------------------------------------------------

def test_measurement_plane_methods():
    rgb = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    p = measurement_plane(rgb, image_kind="rgb_composite", bands="z,r,g", band="r")
    assert p.method == "channel_proxy" and np.array_equal(p.data, rgb[:, :, 1].astype(float)) and p.noise_floor > 0
    lum = measurement_plane(rgb, image_kind="rgb_composite", bands="z,r,g", band="luminance")
    assert lum.method == "luminance_proxy" and np.allclose(lum.data, rgb.mean(axis=2))
    flux = measurement_plane(rgb.astype(np.float32), image_kind="flux", bands="z,r,g", band="g")
    assert flux.method == "flux" and flux.data.dtype == np.float64
    with pytest.raises(InputError, match="band 'u'"):
        measurement_plane(rgb, image_kind="rgb_composite", bands="z,r,g", band="u")
    with pytest.raises(InputError, match="image_kind"):
        measurement_plane(rgb, image_kind="jpeg", bands="z,r,g", band="r")


def test_known_stretch_is_inverted_to_flux():
    observe = pytest.importorskip("features.sources.synthetic.observe")
    stretch = dict(observe.DEFAULT_STRETCH)
    flux = np.stack([sersic_stamp(1.0, total=200.0, noise=0.01, seed=s) for s in (1, 2, 3)], axis=2) * 0.05
    rgb = observe.apply_stretch(flux, stretch)
    plane = measurement_plane(rgb, image_kind="rgb_composite", bands=stretch["bands"], band="r", stretch=stretch)
    assert plane.method == "inverted_stretch"
    bright = flux[:, :, 1] > 0.05
    np.testing.assert_allclose(plane.data[bright], flux[:, :, 1][bright], rtol=0.05)
    rec = measure_image(rgb, image_kind="rgb_composite", bands=stretch["bands"], band="r", stretch=stretch,
                        options=FAST)
    assert rec["method"] == "inverted_stretch" and rec["image_kind"] == "rgb_composite"


# --- pathological inputs: NaN + flags, never an exception, never -99 ----------------------------------------

def test_pathological_galaxies_give_nan_and_flags():
    rng = np.random.default_rng(4)
    blank = np.zeros((48, 48))
    nan_pixels = sersic_stamp(1.0, size=48, seed=3)
    nan_pixels[5:9, 5:9] = np.nan
    off_centre = sersic_stamp(1.0, size=64, r_eff=2.0, centre=(8, 8), seed=4)
    tiny = rng.normal(0, 0.5, (48, 48))
    tiny[23:25, 23:25] += 10.0
    recs = {name: measure_plane(Plane(img, "r", "flux"), options=FAST)
            for name, img in [("blank", blank), ("nan", nan_pixels), ("off", off_centre), ("tiny", tiny)]}
    assert recs["blank"]["flags"] & Flag.IMAGE_BLANK and math.isnan(recs["blank"]["gini"])
    assert recs["nan"]["flags"] & Flag.IMAGE_NAN and math.isfinite(recs["nan"]["gini"])
    assert recs["off"]["flags"] & Flag.MORPH_NO_CENTRAL_SOURCE and math.isnan(recs["off"]["concentration"])
    assert recs["tiny"]["flags"] & Flag.MORPH_SMALL_SOURCE
    for rec in recs.values():
        _no_sentinels(rec)
        assert rec["error"] is None


@pytest.mark.parametrize("star_flux, flags", [
    (0.0, set()),
    (300.0, {"MORPH_DEBLENDED"}),  # 1.5 % of the galaxy: deblended and masked, trusted
    (3000.0, {"MORPH_DEBLENDED", "MORPH_CENTRE_BLENDED"}),  # 15 %: the galaxy's values are not
])
def test_centre_blended_needs_a_bright_touching_neighbour(star_flux, flags):
    from features.morphometrics.segmentation import segment_central

    galaxy = sersic_stamp(1.0, size=96, r_eff=8.0, total=2e4, noise=0.5, seed=1)
    star = sersic_stamp(0.5, size=96, r_eff=1.0, total=star_flux, noise=0.0, ellip=0.0, centre=(72, 48))
    seg = segment_central(galaxy + star)
    assert set(decode(seg.flags)) == flags
    assert seg.blend_fraction == pytest.approx(star_flux / 2e4, abs=0.03)  # the star's own light, above the saddle
    assert bool(seg.mask[48, 72]) == bool(flags)  # a deblended star is masked for statmorph


def test_clipped_composite_core_is_flagged_saturated():
    image = np.clip(sersic_stamp(3.0, total=2e5, noise=2.0, seed=11) + 20, 0, 255).astype(np.uint8)
    rgb = np.repeat(image[:, :, None], 3, axis=2)
    rec = measure_image(rgb, image_kind="rgb_composite", bands="z,r,g", band="r", options=FAST)
    assert rec["saturated_pixels"] == int(((image == 255) & (image > 0)).sum()) > 0
    assert rec["flags"] & Flag.MORPH_SATURATED and math.isfinite(rec["concentration"])
    flux = measure_image(image.astype(float), image_kind="flux", bands="r", band="r", options=FAST)
    assert flux["saturated_pixels"] == 0 and not flux["flags"] & Flag.MORPH_SATURATED


def test_time_limit_gives_timed_out_record():
    rec = measure_plane(Plane(sersic_stamp(1.0, seed=7), "r", "flux"), options=MorphOptions(time_limit_s=1e-4))
    assert rec["flags"] & Flag.MORPH_TIMED_OUT
    assert all(math.isnan(rec[q]) for q in QUANTITIES)
    assert "MorphTimeout" in rec["error"]


def test_an_exception_is_flagged_not_raised(monkeypatch):
    import features.morphometrics.measure as measure

    def boom(*args, **kwargs):
        raise RuntimeError("statmorph exploded")

    monkeypatch.setattr(measure, "run_statmorph", boom)
    rec = measure_plane(Plane(sersic_stamp(1.0, seed=8), "r", "flux"), options=FAST)
    assert rec["flags"] & Flag.MORPH_FAILED and rec["error"] == "RuntimeError: statmorph exploded"
    assert math.isnan(rec["gini"])


def test_batch_continues_past_bad_galaxies_in_order():
    items = [
        MorphInput("g:0", sersic_stamp(1.0, size=48, seed=1), "flux", "r", 0.262),
        MorphInput("g:1", np.zeros((48, 48)), "flux", "r", 0.262),
        MorphInput("g:2", np.full((48, 48), np.nan), "flux", "r", None),
        MorphInput("g:3", sersic_stamp(2.0, size=48, seed=2)[:, :, None], "flux", "r", 0.262),
    ]
    recs = measure_batch(items, bands=["r"], options=FAST, workers=1)
    assert [r["galaxy_id"] for r in recs] == ["g:0", "g:1", "g:2", "g:3"]
    assert recs[0]["flags"] == 0 and recs[3]["flags"] == 0
    assert recs[1]["flags"] & Flag.IMAGE_BLANK and recs[2]["flags"] & Flag.IMAGE_BLANK
    assert math.isnan(recs[2]["r50_arcsec"]) and math.isnan(recs[2]["pxscale"])


def test_batch_rejects_a_missing_band_up_front():
    items = [MorphInput("folder:abc", np.zeros((16, 16, 3), np.uint8), "rgb_composite", "z,r,g")]
    with pytest.raises(InputError, match=r"folder:abc.*'i'"):
        measure_batch(items, bands=["i"], workers=1)


# --- the stamp statmorph measures in (big frames) ------------------------------------------------------------

@pytest.mark.parametrize("box", [(10, 30, 12, 25), (0, 5, 200, 240), (100, 300, 5, 60), (60, 61, 70, 71),
                                 (150, 255, 150, 255)])
def test_statmorph_stamp_is_statmorphs_own_slice(box):
    from photutils.segmentation import SegmentationImage

    from features.morphometrics import statmorph_stamp

    y0, y1, x0, x1 = box
    segmap = np.zeros((320, 260), np.int32)
    segmap[y0:y1, x0:x1] = 1
    segmap[y0, x0] = 0  # not a full rectangle
    segmap[y1 - 1, x1 - 1] = 1
    probe = statmorph.SourceMorphology.__new__(statmorph.SourceMorphology)
    probe._image, probe._segmap, probe.label = np.zeros(segmap.shape), SegmentationImage(segmap), 1
    probe._cutout_extent, probe._min_cutout_size = 2.5, 48
    assert statmorph_stamp(segmap) == probe._slice_stamp


def _frame(size: int, centre: tuple[float, float], seed: int) -> np.ndarray:
    """A 64 x 64 Sersic galaxy and a fainter neighbour placed in a noise frame of ``size`` pixels."""
    rng = np.random.default_rng(seed)
    frame = rng.normal(0.0, 0.5, (size, size))
    cy, cx = centre
    frame[cy - 32 : cy + 32, cx - 32 : cx + 32] += sersic_stamp(1.5, r_eff=5.0, noise=0.0, ellip=0.3)
    frame[cy - 32 : cy + 32, cx + 10 : cx + 74] += sersic_stamp(4.0, r_eff=2.0, total=2e3, noise=0.0)
    return frame


@pytest.mark.parametrize(("size", "centre", "sersic"), [(423, (211, 211), True), (300, (150, 150), False)])
def test_cutout_gives_the_full_frame_values(size, centre, sersic):
    """statmorph on its own stamp equals statmorph on the whole frame (positions in frame pixels)."""
    plane = Plane(_frame(size, centre, seed=size), "r", "flux")
    full = measure_plane(plane, options=MorphOptions(fit_sersic=sersic, time_limit_s=0, cutout=False))
    cut = measure_plane(plane, options=MorphOptions(fit_sersic=sersic, time_limit_s=0, cutout=True))
    assert full["flags"] == cut["flags"] and full["statmorph_flag"] == cut["statmorph_flag"] == 0
    assert full["segment_area"] == cut["segment_area"] > 0
    for q in QUANTITIES:
        a, b = full[q], cut[q]
        assert math.isnan(a) == math.isnan(b), q
        if not math.isnan(a):
            assert b == pytest.approx(a, rel=1e-6 if q.startswith("sersic_") else 1e-10, abs=1e-12), q
    assert abs(cut["xc_centroid"] - centre[1]) < 3 and abs(cut["yc_centroid"] - centre[0]) < 3


def test_cutout_only_for_verified_statmorph_versions(monkeypatch):
    import features.morphometrics.measure as measure

    def refuse(*args, **kwargs):
        raise AssertionError("the stamp was cut for an unverified statmorph")

    plane = Plane(_frame(200, (100, 100), seed=5), "r", "flux")
    monkeypatch.setattr(measure, "statmorph_stamp", refuse)
    monkeypatch.setattr(statmorph, "__version__", "99.0")
    rec = measure_plane(plane, options=MorphOptions(fit_sersic=False, time_limit_s=0))
    assert rec["flags"] == 0 and rec["error"] is None and abs(rec["xc_centroid"] - 100) < 3


# --- process pool and watchdog --------------------------------------------------------------------------------

class HangingImage:
    """An image whose conversion ignores SIGALRM and sleeps: a worker stuck where signals cannot reach."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __array__(self, dtype=None, copy=None):
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        time.sleep(self.seconds)
        return np.zeros((16, 16))


@pytest.mark.slow
def test_pool_matches_serial_and_watchdog_recovers_from_a_hung_worker():
    good = [MorphInput(f"g:{i}", sersic_stamp(1.0 + i, size=48, seed=i), "flux", "r", 0.262) for i in range(3)]
    items = [good[0], MorphInput("g:hang", HangingImage(60.0), "flux", "r", 0.262), good[1], good[2]]
    opts = MorphOptions(fit_sersic=False, time_limit_s=30.0)
    pooled = measure_batch(iter(items), bands=["r"], options=opts, workers=2, hard_timeout_s=4.0)
    serial = measure_batch(good, bands=["r"], options=opts, workers=1)
    assert [r["galaxy_id"] for r in pooled] == ["g:0", "g:hang", "g:1", "g:2"]
    assert pooled[1]["flags"] & Flag.MORPH_TIMED_OUT and "worker hung" in pooled[1]["error"]
    for p, s in zip([pooled[0], pooled[2], pooled[3]], serial):
        for q in ("gini", "m20", "concentration", "asymmetry"):
            assert p[q] == pytest.approx(s[q], rel=1e-12)


def test_batch_called_from_a_thread_measures_in_a_process_with_the_time_limit():
    """A Dask worker runs a step in a thread: the time limit (SIGALRM) must still hold there, so the
    galaxy goes to a worker process, whose values equal the in-thread ones."""
    import threading

    items = [MorphInput("g:0", sersic_stamp(1.5, size=48, seed=3), "flux", "r", 0.262)]
    out: dict[str, list[dict]] = {}

    def in_thread(key: str, options: MorphOptions) -> None:
        out[key] = measure_batch(items, bands=["r"], options=options, workers=1)

    for key, opts in (("limited", MorphOptions(fit_sersic=False, time_limit_s=1e-4)), ("free", FAST)):
        t = threading.Thread(target=in_thread, args=(key, opts))
        t.start()
        t.join()
    assert out["limited"][0]["flags"] & Flag.MORPH_TIMED_OUT
    here = measure_batch(items, bands=["r"], options=FAST, workers=1)
    assert out["free"][0]["flags"] == here[0]["flags"] == 0
    for q in ("gini", "m20", "concentration", "asymmetry", "r50"):
        assert out["free"][0][q] == here[0][q]


# --- schema and asset ---------------------------------------------------------------------------------------------

def test_schema_covers_every_record_field():
    spec = schemas.get("morphometrics")
    assert spec.keys == ("galaxy_id", "band")
    assert tuple(MORPH_QUANTITIES) == QUANTITIES
    rec = measure_plane(Plane(sersic_stamp(1.0, seed=9), "r", "flux"), options=FAST)
    rec.update(galaxy_id="g", pxscale=0.2, image_kind="flux")
    produced = set(rec) | {"shard", "statmorph_version"}
    assert produced == set(spec.columns.names)
    assert {f"{r}_arcsec" for r in MORPH_ARCSEC_RADII} <= produced


def _write_shard(wh, n: int = 3) -> list[str]:
    ids, gal, img = [], [], []
    for i in range(n):
        gid = f"demo:{i:06d}"
        image = np.clip(sersic_stamp(1.0 + i, size=48, total=3000, noise=2.0, seed=20 + i) + 10, 0, 255)
        rgb = np.repeat(image[:, :, None], 3, axis=2).astype(np.uint8)
        enc, data = encode_image(rgb)
        ids.append(gid)
        gal.append(dict(galaxy_id=gid, source="demo", native_id=f"{i:06d}", shard=SHARD, row_index=i, ra=1.0,
                        dec=2.0, redshift=None, pxscale=0.262, label=0, label_name=None, extra_json=None,
                        image_sha1=f"{i:040x}", duplicate_group=None, flags=0))
        img.append(dict(galaxy_id=gid, shard=SHARD, encoding=enc, data=data, height=48, width=48, channels=3,
                        dtype="uint8", bands="z,r,g", image_kind="rgb_composite", stretch_json=None))
    wh.upsert("images", img)
    wh.upsert("galaxies", gal)
    return ids


def _materialize(root, config: dict | None = None) -> dg.ExecuteInProcessResult:
    from dagster_project.defs.morphometrics.assets import morphometrics
    from dagster_project.resources import WarehouseResource

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("shards", [SHARD])
    return dg.materialize(
        [morphometrics], partition_key=SHARD, instance=instance,
        resources={"warehouse": WarehouseResource(root=str(root))},
        run_config={"ops": {"morphometrics": {"config": config}}} if config else None,
        raise_on_error=False,
    )


def test_asset_materializes_checks_and_is_idempotent(warehouse):
    ids = _write_shard(warehouse)
    config = {"workers": 1, "bands": ["r", "luminance"], "fit_sersic": False}
    first = _materialize(warehouse.root, config)
    assert first.success
    rows = warehouse.read("morphometrics").sort_by([("galaxy_id", "ascending"), ("band", "ascending")]).to_pylist()
    assert [(r["galaxy_id"], r["band"]) for r in rows] == [(g, b) for g in ids for b in ("luminance", "r")]
    assert {r["method"] for r in rows} == {"channel_proxy", "luminance_proxy"} and rows[0]["shard"] == SHARD
    assert all(0 <= r["gini"] <= 1 and r["m20"] < 0 and r["flag_sersic"] == -1 for r in rows)
    checks = {c.check_name: c for c in first.get_asset_check_evaluations()}
    assert set(checks) == {"flag_rate", "gini_in_unit_interval", "m20_negative", "finite_when_unflagged"}
    assert all(c.passed for c in checks.values()), {k: c.metadata for k, c in checks.items()}
    assert checks["flag_rate"].metadata["max_failed_rate"].value == 0.10
    from stages.morphometrics import MorphometricsResult

    raw = first.asset_materializations_for_node("morphometrics")[0].metadata
    meta = MorphometricsResult.from_metadata({k: v.value for k, v in raw.items()})
    assert meta.distributions["gini"]["n"] == 6 and meta.rows == 6 and meta.galaxies == 3
    assert meta.bands == "r, luminance" and "measured_with" in raw and "failed_rate" not in raw
    second = _materialize(warehouse.root, config)
    assert second.success and warehouse.count("morphometrics") == 6
    view = warehouse.sql("SELECT * FROM morphology ORDER BY galaxy_id")
    assert view.height == 3 and view["bands_measured"].to_list() == [2, 2, 2]
    assert view["gini_r"].is_not_null().all() and view["gini_luminance"].is_not_null().all()
    assert view["gini_g"].is_null().all()


def test_morph_ok_is_false_exactly_for_the_untrusted_bits(warehouse):
    ids = _write_shard(warehouse, n=2)
    assert _materialize(warehouse.root, {"workers": 1, "bands": ["r"], "fit_sersic": False}).success
    measured = warehouse.read("morphometrics").to_pylist()
    # one more galaxy per image and morphometrics flag bit (plus none, plus one with no morphometrics row)
    bits = [f for f in Flag if f & (stage_mask("image") | stage_mask("morphometrics"))]
    values = [0, *[int(f) for f in bits], int(Flag.MORPH_DEBLENDED | Flag.MORPH_CENTRE_BLENDED)]
    provenance = {"code_version", "run_id", "written_at"}
    rows, galaxies = [], []
    for k, value in enumerate(values):
        gid = f"demo:{100 + k:06d}"
        rows.append({**{c: v for c, v in measured[0].items() if c not in provenance}, "galaxy_id": gid, "flags": value})
        galaxies.append(dict(galaxy_id=gid, source="demo", native_id=gid[5:], shard=SHARD, row_index=100 + k, ra=1.0,
                             dec=2.0, redshift=None, pxscale=0.262, label=0, label_name=None, extra_json=None,
                             image_sha1=f"{100 + k:040x}", duplicate_group=None, flags=0))
    galaxies.append({**galaxies[-1], "galaxy_id": "demo:000999", "native_id": "000999", "image_sha1": f"{999:040x}"})
    warehouse.upsert("morphometrics", rows)
    warehouse.upsert("galaxies", galaxies)

    df = warehouse.sql("SELECT galaxy_id, morph_flags, morph_ok, morph_untrusted_mask() AS mask FROM galaxy_features")
    assert df.height == len(ids) + len(values) + 1 and df["mask"].unique().to_list() == [int(MORPH_UNTRUSTED)]
    got = dict(zip(df["galaxy_id"], zip(df["morph_flags"], df["morph_ok"])))
    for gid, (flags, ok) in got.items():
        assert ok is (flags is not None and flags & int(MORPH_UNTRUSTED) == 0), (gid, flags, ok)
    assert got["demo:000999"] == (None, False)  # not measured: not ok
    by_bit = {Flag(v).name: got[f"demo:{100 + k:06d}"][1] for k, v in enumerate(values) if v and v in {int(b) for b in bits}}
    assert {name for name, ok in by_bit.items() if not ok} == {f.name for f in Flag if f & MORPH_UNTRUSTED}
    assert by_bit["MORPH_DEBLENDED"] and by_bit["MORPH_SERSIC_FAILED"] and by_bit["IMAGE_NAN"]
    assert [got[g][1] for g in ids] == [morph_ok(r["flags"]) for r in sorted(measured, key=lambda r: r["galaxy_id"])]


def test_asset_rejects_a_band_the_images_lack_and_writes_nothing(warehouse):
    _write_shard(warehouse, n=1)
    result = _materialize(warehouse.root, {"workers": 1, "bands": ["i"]})
    assert not result.success
    assert "demo:000000" in str(result.get_step_failure_events()[0].event_specific_data.error)
    assert not warehouse.exists("morphometrics")


# --- demo survey truth -------------------------------------------------------------------------------------------

def test_demo_asymmetry_is_higher_for_merging_and_disturbed_than_smooth():
    synthetic = pytest.importorskip("features.sources.synthetic")
    survey = synthetic.SyntheticSurvey(n=200, seed=0, size=128)
    labels = survey.labels
    disturbed = [int(i) for i in np.flatnonzero(np.isin(labels, [0, 1]))[:5]]
    smooth = [int(i) for i in np.flatnonzero(np.isin(labels, [2, 3]))[:5]]
    stretch = dict(synthetic.DEFAULT_STRETCH)

    def asym(rows: list[int]) -> np.ndarray:
        recs = [measure_image(survey.render(r).rgb, image_kind="rgb_composite", bands="z,r,g", band="r",
                              stretch=stretch, options=FAST) for r in rows]
        return np.array([r["asymmetry"] for r in recs])

    a_dist, a_smooth = asym(disturbed), asym(smooth)
    assert np.isfinite(a_dist).all() and np.isfinite(a_smooth).all()
    assert np.median(a_dist) > np.median(a_smooth) + 0.05, (a_dist, a_smooth)
