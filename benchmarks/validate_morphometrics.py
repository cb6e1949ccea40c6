"""Validate the morphometrics on real and synthetic galaxies; prints markdown for docs/benchmarks_morphometrics.md.

``--real``: the 370 Galaxy Zoo DECaLS stamps in ``../shared/data/gz_decals_rings/`` (r channel of the
composite, ``channel_proxy``): flag rates, the distribution of each quantity against the ranges published
for nearby galaxies (Lotz, Primack & Madau 2004 for Gini/M20; Conselice 2003 for CAS), and Spearman
correlations with the volunteers' "featured or disk" vote fraction (smooth, bulge-dominated galaxies
should be more concentrated and have higher Gini and lower M20).

``--demo``: the synthetic demo survey (``features.sources.synthetic``), measured in r after inverting its
known stretch, with its Moffat PSF for the Sersic fit: Spearman correlations (rho, p, n) of
concentration, Gini, M20 and the fitted Sersic index with the true bulge-to-total ratio, the
light-weighted and the bulge Sersic index, over all galaxies and inside families at similar
resolution (smooth, spirals, edge-on), and the asymmetry of Merging/Disturbed against smooth classes.
``--diagnose N`` measures the first N galaxies four ways (composite, float flux, target without
neighbours, target before the PSF) to show what drives C and Gini.

Usage::

    .venv/bin/python benchmarks/validate_morphometrics.py --real --demo --n-demo 300 --diagnose 120 --workers 2
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.stats import mannwhitneyu, spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features.flags import decode  # noqa: E402
from features.morphometrics import MorphInput, MorphOptions, measure_batch  # noqa: E402

RINGS = ROOT.parent / "shared" / "data" / "gz_decals_rings"

PUBLISHED = {
    # quantity: (low, high, source) -- ranges spanned by normal nearby galaxies in flux images
    "gini": (0.35, 0.70, "Lotz et al. 2004: Sc/Irr ~0.4, E/S0 ~0.6"),
    "m20": (-2.6, -1.0, "Lotz et al. 2004: E ~-2.4, late types ~-1.5"),
    "concentration": (2.0, 5.0, "Conselice 2003: Irr 2.9, Sc-d 3.1, Sa-b 3.9, E 4.4"),
    "asymmetry": (-0.05, 0.35, "Conselice 2003: E 0.02, Sc-d 0.15; mergers > 0.35"),
    "smoothness": (-0.05, 0.40, "Conselice 2003: E ~0, spirals 0.1-0.4 (resolution dependent)"),
}
DISTRIBUTION = ("gini", "m20", "concentration", "asymmetry", "smoothness", "multimode", "intensity",
                "deviation", "outer_asymmetry", "shape_asymmetry", "rpetro_circ_arcsec", "r50_arcsec",
                "sersic_n", "sn_per_pixel")


def _col(recs: list[dict], q: str) -> np.ndarray:
    return np.array([r[q] for r in recs], dtype=float)


def flag_table(recs: list[dict]) -> None:
    n = len(recs)
    counts: dict[str, int] = {}
    for r in recs:
        for name in decode(r["flags"]):
            counts[name] = counts.get(name, 0) + 1
    sm = [r["statmorph_flag"] for r in recs]
    print("| flag | galaxies | rate |\n|---|---|---|")
    print(f"| none (flags == 0) | {sum(r['flags'] == 0 for r in recs)} | {sum(r['flags'] == 0 for r in recs) / n:.1%} |")
    for name, c in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {c} | {c / n:.1%} |")
    for f in sorted({s for s in sm if s is not None}):
        print(f"| statmorph flag = {f} | {sm.count(f)} | {sm.count(f) / n:.1%} |")
    print()


def distribution_table(recs: list[dict]) -> None:
    print("| quantity | finite | p05 | median | p95 | published range | inside |\n|---|---|---|---|---|---|---|")
    for q in DISTRIBUTION:
        v = _col(recs, q)
        v = v[np.isfinite(v)]
        if not v.size:
            print(f"| {q} | 0 | | | | | |")
            continue
        lo, hi, src = PUBLISHED.get(q, (math.nan, math.nan, ""))
        inside = f"{np.mean((v >= lo) & (v <= hi)):.0%}" if src else ""
        rng = f"{lo:g} to {hi:g} ({src})" if src else ""
        print(f"| {q} | {v.size} | {np.percentile(v, 5):.3f} | {np.median(v):.3f} | {np.percentile(v, 95):.3f} "
              f"| {rng} | {inside} |")
    print()


def rho(x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    ok = np.isfinite(x) & np.isfinite(y)
    return (float(spearmanr(x[ok], y[ok])[0]) if ok.sum() > 2 else math.nan), int(ok.sum())


def real(workers: int, n: int, fit_sersic: bool) -> None:
    with open(RINGS / "catalog.csv", newline="") as fh:
        cat = list(csv.DictReader(fh))[:n]
    items = [MorphInput(f"folder:{row['id']}", np.asarray(Image.open(RINGS / "images" / f"{row['id']}.png").convert("RGB")),
                        "rgb_composite", "z,r,g", 0.262) for row in cat]
    t0 = time.perf_counter()
    recs = measure_batch(items, bands=["r"], options=MorphOptions(fit_sersic=fit_sersic), workers=workers)
    dt = time.perf_counter() - t0
    print(f"## Real galaxies: {len(recs)} GZ DECaLS stamps, r channel (channel_proxy), {dt:.0f} s with "
          f"{workers} workers ({len(recs) / dt:.2f} galaxies/s on a shared machine)\n")
    flag_table(recs)
    distribution_table(recs)
    featured = np.array([float(r["smooth-or-featured_featured-or-disk_fraction"]) for r in cat])
    ring = np.array([int(r["ring"]) for r in cat])
    print("Spearman correlation with the volunteers' featured-or-disk vote fraction (expect < 0 for G and C, "
          "> 0 for M20):\n")
    print("| quantity | rho | galaxies | median ring | median non-ring |\n|---|---|---|---|---|")
    for q in ("gini", "concentration", "m20", "asymmetry", "smoothness", "sersic_n"):
        v = _col(recs, q)
        r_, k = rho(v, featured)
        print(f"| {q} | {r_:+.2f} | {k} | {np.nanmedian(v[ring == 1]):.3f} | {np.nanmedian(v[ring == 0]):.3f} |")
    print()


SMOOTH, SPIRAL, EDGE_ON, DISTURBED = (2, 3, 4), (5, 6, 7), (8, 9), (0, 1)
RESOLVED = 2.5
"""Main component's half-light radius over the r-band PSF FWHM above which a galaxy counts as resolved."""


def _truth_arrays(truth: list[dict]) -> dict[str, np.ndarray]:
    bt = np.nan_to_num(np.array([t["bulge_to_total"] for t in truth], float), nan=0.0)
    bulge_n = np.nan_to_num(np.array([t["bulge_n"] for t in truth], float), nan=0.0)
    disk_n = np.nan_to_num(np.array([t["disk_n"] for t in truth], float), nan=1.0)
    labels = np.array([t["label"] for t in truth])
    main_hlr = np.array([t["bulge_hlr_arcsec"] if t["label"] in SMOOTH or not math.isfinite(t["disk_hlr_arcsec"] or math.nan)
                         else t["disk_hlr_arcsec"] for t in truth], float)
    psf = np.array([t["psf_fwhm_r_arcsec"] for t in truth], float)
    return {"bt": bt, "bulge_n": bulge_n, "n_eff": bt * bulge_n + (1 - bt) * disk_n, "labels": labels,
            "resolution": main_hlr / psf}


def _rho_p(x: np.ndarray, y: np.ndarray) -> str:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return "-"
    r_, p = spearmanr(x[ok], y[ok])
    return f"{r_:+.2f} ({p:.0e})"


def _samples(t: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    lab, res = t["labels"], t["resolution"]
    resolved = res >= RESOLVED
    return [
        ("all galaxies", np.ones(lab.size, bool)),
        (f"smooth + spirals, resolved (r_e >= {RESOLVED} FWHM)", np.isin(lab, SMOOTH + SPIRAL) & resolved),
        ("smooth (classes 2-4), resolved", np.isin(lab, SMOOTH) & resolved),
        ("spirals (classes 5-7), resolved", np.isin(lab, SPIRAL) & resolved),
        ("edge-on (classes 8-9)", np.isin(lab, EDGE_ON)),
    ]


def correlation_table(recs: list[dict], t: dict[str, np.ndarray], quantities: tuple[str, ...]) -> None:
    print("| sample | galaxies | measured | true B/T: rho (p) | light-weighted n: rho (p) | bulge n: rho (p) |\n"
          "|---|---|---|---|---|---|")
    for name, sel in _samples(t):
        for q in quantities:
            v = _col(recs, q)[sel]
            print(f"| {name} | {sel.sum()} | {q} | {_rho_p(v, t['bt'][sel])} | {_rho_p(v, t['n_eff'][sel])} "
                  f"| {_rho_p(v, t['bulge_n'][sel])} |")
    print()


def demo(workers: int, n: int, seed: int, compare_flux: bool = False) -> None:
    from features.sources.classes import GALAXY10_CLASSES
    from features.sources.synthetic import SyntheticSurvey
    from features.sources.synthetic.observe import psf_kernel

    survey = SyntheticSurvey(n=n, seed=seed)
    items, truth = [], []
    t0 = time.perf_counter()
    for batch in survey.iter_batches(0, n):
        for k, image in enumerate(batch.images):
            items.append(MorphInput(f"demo:{batch.native_ids[k]}", image, batch.image_kind, batch.bands,
                                    float(batch.pxscale[k]), batch.stretch))
    truth = survey.truth_table(0, n).to_pylist()
    items = [MorphInput(it.galaxy_id, it.image, it.image_kind, it.bands, it.pxscale, it.stretch,
                        psf_kernel(t["psf_fwhm_r_arcsec"], t["psf_beta"])) for it, t in zip(items, truth)]
    t_render = time.perf_counter() - t0
    t0 = time.perf_counter()
    recs = measure_batch(items, bands=["r"], options=MorphOptions(), workers=workers)
    dt = time.perf_counter() - t0
    print(f"## Demo survey: {n} synthetic galaxies (seed {seed}), r band after inverting the stretch, Moffat PSF "
          f"in the Sersic fit (render {t_render:.0f} s, measure {dt:.0f} s with {workers} workers)\n")
    flag_table(recs)
    t = _truth_arrays(truth)
    print("Spearman correlations with the truth: rho (two-sided p); light-weighted n = B/T n_bulge + (1 - B/T) "
          "n_disk (n_disk = 1); 'resolved' = main component's half-light radius >= "
          f"{RESOLVED} x the r-band PSF FWHM:\n")
    correlation_table(recs, t, ("concentration", "gini", "m20", "sersic_n"))
    if compare_flux:
        flux_items = [MorphInput(f"flux:{i}", survey.render(i).flux, "flux", "z,r,g", 0.262) for i in range(n)]
        frecs = measure_batch(flux_items, bands=["r"], options=MorphOptions(fit_sersic=False), workers=workers)
        print("The same galaxies measured on their float r flux before the 8-bit composite (no clipping):\n")
        correlation_table(frecs, t, ("concentration", "gini"))
    labels = t["labels"]
    asym = _col(recs, "asymmetry")
    disturbed = np.isin(labels, DISTURBED) & np.isfinite(asym)
    smooth = np.isin(labels, SMOOTH) & np.isfinite(asym)
    p = mannwhitneyu(asym[disturbed], asym[smooth], alternative="greater").pvalue if disturbed.any() and smooth.any() else math.nan
    print(f"Asymmetry: median {np.median(asym[disturbed]):.3f} for Merging/Disturbed ({disturbed.sum()}) vs "
          f"{np.median(asym[smooth]):.3f} for the smooth classes ({smooth.sum()}); one-sided Mann-Whitney p = {p:.1e}.\n")
    print("| class | galaxies | clipped r (MORPH_SATURATED) | median C | median Gini | median A | median fitted n |\n"
          "|---|---|---|---|---|---|---|")
    sat = _col(recs, "saturated_pixels") > 0
    for lab, name in enumerate(GALAXY10_CLASSES):
        sel = labels == lab
        if sel.any():
            med = [np.nanmedian(_col(recs, q)[sel]) for q in ("concentration", "gini", "asymmetry", "sersic_n")]
            print(f"| {name} | {sel.sum()} | {sat[sel].mean():.0%} | " + " | ".join(f"{m:.3f}" for m in med) + " |")
    print()


def diagnose(workers: int, n: int, seed: int) -> None:
    """What drives C and Gini: the same galaxies as composite, float flux, target alone, and before the PSF."""
    from features.sources.classes import GALAXY10_CLASSES
    from features.sources.synthetic import DEFAULT_STRETCH, SyntheticSurvey
    from features.sources.synthetic.galaxy import rng_streams
    from features.sources.synthetic.params import draw_params
    from features.sources.synthetic.render import render_target

    survey = SyntheticSurvey(n=n, seed=seed)
    gals = [survey.render(i) for i in range(n)]
    t = _truth_arrays([g.truth for g in gals])
    noise = np.random.default_rng(seed + 1)
    versions: dict[str, list[MorphInput]] = {
        "composite (inverted stretch)": [MorphInput(f"d{i}", g.rgb, "rgb_composite", "z,r,g", 0.262, dict(DEFAULT_STRETCH))
                                         for i, g in enumerate(gals)],
        "float flux (no 8-bit, no clipping)": [MorphInput(f"d{i}", g.flux, "flux", "z,r,g", 0.262) for i, g in enumerate(gals)],
        "target alone + sky noise (no neighbours)": [
            MorphInput(f"d{i}", g.target + noise.normal(0.0, g.params.sky_sigma_r, g.target.shape), "flux", "z,r,g", 0.262)
            for i, g in enumerate(gals)],
    }
    unconvolved = []
    for i in range(n):
        rng_p, rng_r, _ = rng_streams(seed, i)
        p = draw_params(int(survey.labels[i]), rng_p)
        light = np.moveaxis(render_target(p, survey.size, rng_r), 0, -1)
        unconvolved.append(MorphInput(f"d{i}", light + noise.normal(0.0, p.sky_sigma_r, light.shape), "flux", "z,r,g", 0.262))
    versions["target before the PSF + sky noise"] = unconvolved
    print(f"## What drives C and Gini: the first {n} demo galaxies (seed {seed}) four ways, r band, no Sersic fit\n")
    print("| image | C vs B/T | C vs light-weighted n | Gini vs B/T | Gini vs light-weighted n | median Gini: smooth / spirals / edge-on |\n"
          "|---|---|---|---|---|---|")
    for name, items in versions.items():
        recs = measure_batch(items, bands=["r"], options=MorphOptions(fit_sersic=False), workers=workers)
        c, g = _col(recs, "concentration"), _col(recs, "gini")
        med = " / ".join(f"{np.nanmedian(g[np.isin(t['labels'], cls)]):.3f}" for cls in (SMOOTH, SPIRAL, EDGE_ON))
        print(f"| {name} | {_rho_p(c, t['bt'])} | {_rho_p(c, t['n_eff'])} | {_rho_p(g, t['bt'])} "
              f"| {_rho_p(g, t['n_eff'])} | {med} |")
    print(f"\nClasses: smooth = {', '.join(GALAXY10_CLASSES[k] for k in SMOOTH)}; spirals = "
          f"{', '.join(GALAXY10_CLASSES[k] for k in SPIRAL)}; edge-on = {', '.join(GALAXY10_CLASSES[k] for k in EDGE_ON)}.\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", action="store_true")
    ap.add_argument("--demo", action="store_true")
    ap.add_argument("--n-real", type=int, default=370)
    ap.add_argument("--n-demo", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-sersic", action="store_true")
    ap.add_argument("--diagnose", type=int, default=0, metavar="N",
                    help="demo: measure the first N galaxies as composite, float flux, target alone and before the PSF")
    ap.add_argument("--compare-flux", action="store_true",
                    help="demo: also measure the float flux before the composite (shows what clipping costs)")
    args = ap.parse_args(argv)
    if args.real:
        real(args.workers, args.n_real, not args.no_sersic)
    if args.demo:
        demo(args.workers, args.n_demo, args.seed, args.compare_flux)
    if args.diagnose:
        diagnose(args.workers, args.diagnose, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
