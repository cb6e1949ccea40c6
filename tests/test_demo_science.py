"""Does the morphometrics stage recover the demo survey's truth? (issue 4's demo validation)

One seeded sample of the demo survey (256 px stamps; the uint8 composites the source yields, measured
through ``features.morphometrics`` with the stretch inverted, as the ``morphometrics`` asset does),
chosen before rendering from the drawn parameters:

* 50 smooth galaxies (Round / In-between Round Smooth) and 50 face-on-ish spirals (barred, tight,
  loose) whose main component's half-light radius is at least 2.5 PSF FWHM (smaller galaxies measure
  the PSF, not the profile);
* 10 Merging / Disturbed galaxies for the asymmetry.

The relations are asserted where the physics puts them, inside a family at similar resolution: the
Sersic index of a spheroid (smooth galaxies) and the bulge fraction of a disk galaxy (spirals), for
both concentration and Gini. Pooled over every class, resolution, edge-on projection and non-bulge
structure (bars, arms, tails) scatter C and Gini as much as the bulge does; those numbers are reported
in ``docs/benchmarks_morphometrics.md``, not asserted. The comments give the values seen for survey
seeds 0-3 with this design (arm contrast 1.3-5, since 2026-11-27); the thresholds hold for all four,
the test uses seed 0.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu, spearmanr

from features.morphometrics import MorphInput, MorphOptions, measure_batch

synthetic = pytest.importorskip("features.sources.synthetic")
from features.sources.synthetic.galaxy import rng_streams  # noqa: E402
from features.sources.synthetic.params import draw_params  # noqa: E402

SEED = 0
SIZE = 256
RESOLVED = 2.5  # main half-light radius / PSF FWHM (r band)
SMOOTH, SPIRAL, DISTURBED = (2, 3), (5, 6, 7), (0, 1)


def _pick(survey, classes: tuple[int, ...], k: int, min_resolution: float = 0.0) -> list[int]:
    """The first ``k`` rows of ``classes`` whose drawn main component is resolved (no rendering needed)."""
    out: list[int] = []
    for row in np.flatnonzero(np.isin(survey.labels, classes)):
        p = draw_params(int(survey.labels[row]), rng_streams(survey.seed, int(row))[0])
        if p.main_hlr_arcsec / p.psf_fwhm_r >= min_resolution:
            out.append(int(row))
            if len(out) == k:
                break
    assert len(out) == k, f"only {len(out)} rows of classes {classes} qualify"
    return out


@pytest.fixture(scope="module")
def measured() -> dict[str, np.ndarray]:
    survey = synthetic.SyntheticSurvey(n=1000, seed=SEED, size=SIZE)
    smooth = _pick(survey, SMOOTH, 50, RESOLVED)
    spiral = _pick(survey, SPIRAL, 50, RESOLVED)
    disturbed = _pick(survey, DISTURBED, 10)
    rows = smooth + spiral + disturbed
    items, truth = [], []
    for row in rows:
        batch = next(survey.iter_batches(row, row + 1, workers=1))  # the images the source yields
        items.append(MorphInput(f"demo:{row}", batch.images[0], batch.image_kind, batch.bands,
                                float(batch.pxscale[0]), batch.stretch))
        truth.append(survey.truth_table(row, row + 1, workers=1).to_pylist()[0])
    recs = measure_batch(items, bands=["r"], options=MorphOptions(fit_sersic=False), workers=2)
    bt = np.array([t["bulge_to_total"] for t in truth], float)
    bulge_n = np.nan_to_num(np.array([t["bulge_n"] for t in truth], float), nan=0.0)
    disk_n = np.nan_to_num(np.array([t["disk_n"] for t in truth], float), nan=1.0)
    group = np.array(["smooth"] * len(smooth) + ["spiral"] * len(spiral) + ["disturbed"] * len(disturbed))
    return {
        "group": group,
        "bt": bt,
        "bulge_n": bulge_n,
        "n_eff": bt * bulge_n + (1.0 - bt) * disk_n,
        "method": np.array([r["method"] for r in recs]),
        **{q: np.array([r[q] for r in recs], float) for q in ("concentration", "gini", "asymmetry")},
    }


def _rho(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    assert np.isfinite(x).all() and np.isfinite(y).all()
    res = spearmanr(x, y)
    return float(res[0]), float(res[1])


def test_sample_is_measured_on_inverted_composites(measured):
    assert set(measured["method"]) == {"inverted_stretch"}
    assert np.isfinite(measured["concentration"]).all() and np.isfinite(measured["gini"]).all()


def test_gini_rises_with_the_sersic_index_of_smooth_galaxies(measured):
    smooth = measured["group"] == "smooth"
    rho, p = _rho(measured["gini"][smooth], measured["n_eff"][smooth])
    assert rho > 0.3 and p < 0.01, (rho, p)  # seeds 0-3: rho 0.45-0.67, p <= 1e-3 (seed 0: 0.63)


def test_concentration_rises_with_the_sersic_index_of_smooth_galaxies(measured):
    smooth = measured["group"] == "smooth"
    rho, p = _rho(measured["concentration"][smooth], measured["n_eff"][smooth])
    assert rho > 0.3 and p < 0.05, (rho, p)  # seeds 0-3: rho 0.32-0.55, p <= 0.02 (seed 0: 0.55)


def test_concentration_rises_with_the_bulge_fraction_of_spirals(measured):
    spiral = measured["group"] == "spiral"
    rho, p = _rho(measured["concentration"][spiral], measured["bt"][spiral])
    assert rho > 0.3 and p < 0.05, (rho, p)  # seeds 0-3: rho 0.38-0.66, p <= 0.01 (seed 0: 0.45)


def test_gini_rises_with_the_bulge_fraction_of_spirals(measured):
    spiral = measured["group"] == "spiral"
    rho, p = _rho(measured["gini"][spiral], measured["bt"][spiral])
    assert rho > 0.25 and p < 0.05, (rho, p)  # seeds 0-3: rho 0.32-0.55, p <= 0.02 (seed 0: 0.39)


def test_asymmetry_is_higher_for_merging_and_disturbed_than_smooth(measured):
    a_dist = measured["asymmetry"][measured["group"] == "disturbed"]
    a_smooth = measured["asymmetry"][measured["group"] == "smooth"]
    assert np.median(a_dist) > np.median(a_smooth) + 0.05
    assert mannwhitneyu(a_dist, a_smooth, alternative="greater").pvalue < 0.01
