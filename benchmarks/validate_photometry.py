"""Recovered photometry against the demo survey's truth: bias and scatter per band and per colour.

The demo survey (:mod:`features.sources.synthetic`) writes an SDSS-like catalogue whose g, r, z model
magnitudes are the rendered targets' true magnitudes (extinction included, as in SDSS) plus Gaussian
noise of the stated error, with 0.15" position scatter, ~2 % of targets missing, ~4 % not clean and
~0.5 % typed as stars, plus neighbours. This script runs the photometry stage's catalogue path on it
exactly as the asset does and compares:

* magnitudes: ``modelMag_x - truth.mag_x`` for x in g, r, z (bias = median, scatter = 1.4826 MAD, and
  the pull ``(recovered - true) / modelMagErr`` whose scatter should be ~1);
* colours: recovered extinction-corrected ``g_r`` and ``r_z = r_i + i_z`` against the intrinsic truth
  ``truth.g_r - (C_g - C_r) E(B-V)`` (same for r-z), over ``quality_ok`` galaxies;
* the match: match rate, and the fraction of matches that picked the target (objid = base + 100 row).

Run: ``.venv/bin/python benchmarks/validate_photometry.py [--n 300] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def robust(x: np.ndarray) -> tuple[float, float, int]:
    """Median, 1.4826 x MAD and count of the finite values."""
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), 0
    med = float(np.median(x))
    return med, float(1.4826 * np.median(np.abs(x - med))), int(x.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="galaxies to render (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from features.photometry import photometry_from_catalogue, read_catalogue
    from features.sources.synthetic import SyntheticSurvey, write_photometry_catalogue
    from features.sources.synthetic.catalogue import OBJID_BASE
    from features.sources.synthetic.params import EXTINCTION_COEFFS

    t0 = time.perf_counter()
    survey = SyntheticSurvey(n=args.n, seed=args.seed)
    truth = survey.truth_table().to_pydict()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_photometry_catalogue(survey, Path(tmp) / "demo_sdss_like.parquet")
        t_render = time.perf_counter() - t0
        cat = read_catalogue(path)
        t1 = time.perf_counter()
        res = photometry_from_catalogue(truth["galaxy_id"], np.asarray(truth["ra"], float), np.asarray(truth["dec"], float),
                                        np.asarray(truth["redshift"], float), catalogue=cat)
        t_match = time.perf_counter() - t1
    out = res.table.to_pydict()
    ok = np.asarray(out["quality_ok"], bool)
    rows = np.arange(len(out["galaxy_id"]))
    objid = np.array([o if o is not None else -1 for o in out["objid"]], np.int64)
    matched = np.isfinite(np.asarray(out["sep_arcsec"], float)) & (np.asarray(out["n_candidates"]) > 0)
    right = objid[matched] == OBJID_BASE + 100 * rows[matched]
    ebv = np.asarray(truth["ebv"], float)

    print(f"## Demo survey: n = {args.n}, seed = {args.seed} (render + catalogue {t_render:.1f} s, "
          f"photometry {t_match:.2f} s)\n")
    s = res.summary
    print(f"match rate {s['match_rate']:.3f}, quality pass rate {s['quality_pass_rate']:.3f}, "
          f"matches that are the target {right.mean():.3f}; not clean {s['n_phot_not_clean']}, "
          f"not galaxy {s['n_phot_not_galaxy']}, no match {s['n_phot_no_match']}, "
          f"several candidates {s['n_phot_multiple_candidates']}\n")
    print("| quantity | galaxies | bias (median) | scatter (1.4826 MAD) | pull scatter |")
    print("|---|---|---|---|---|")
    for b in "grz":
        rec = np.asarray(out[f"modelMag_{b}"], float)
        err = np.asarray(out[f"modelMagErr_{b}"], float)
        diff = (rec - np.asarray(truth[f"mag_{b}"], float))[matched & (objid == OBJID_BASE + 100 * rows)]
        pull = ((rec - np.asarray(truth[f"mag_{b}"], float)) / err)[matched & (objid == OBJID_BASE + 100 * rows)]
        bias, scat, n = robust(diff)
        print(f"| modelMag_{b} | {n} | {bias:+.4f} | {scat:.4f} | {robust(pull)[1]:.2f} |")
    true_gr = np.asarray(truth["g_r"], float) - (EXTINCTION_COEFFS["g"] - EXTINCTION_COEFFS["r"]) * ebv
    true_rz = np.asarray(truth["r_z"], float) - (EXTINCTION_COEFFS["r"] - EXTINCTION_COEFFS["z"]) * ebv
    rec_gr = np.asarray(out["g_r"], float)
    rec_rz = np.asarray(out["r_i"], float) + np.asarray(out["i_z"], float)
    for name, rec, true in (("g-r (dereddened)", rec_gr, true_gr), ("r-z (dereddened)", rec_rz, true_rz)):
        bias, scat, n = robust((rec - true)[ok])
        print(f"| {name} | {n} | {bias:+.4f} | {scat:.4f} | - |")


if __name__ == "__main__":
    main()
