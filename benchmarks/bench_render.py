"""Rendering speed of the synthetic demo survey, in galaxies per second per core.

Measures, in one run on the same machine:

1. ``ours``: :func:`features.sources.synthetic.render_galaxy` (GalSim profiles drawn at pixel centres,
   numpy structure, one float32 FFT convolution per band, noise, stretch, truth record), serially, per
   class; CPU time of this process (``time.process_time``), so other load on a shared machine does not
   count against it.
2. ``galsim_fft`` (baseline): the textbook GalSim route for the same galaxies' smooth parts only
   (bulge + disk + bar + companion, each ``Convolve``-d with the band's Moffat PSF and drawn with the
   default FFT method, three bands): what rendering would cost without the shortcuts.
3. ``pool``: :meth:`SyntheticSurvey.iter_batches` over all usable cores (wall time, includes process
   start-up), reported as galaxies/s and per core.

Usage::

    .venv/bin/python benchmarks/bench_render.py            # 100 galaxies (10 per class), 256 x 256
    .venv/bin/python benchmarks/bench_render.py --n 300 --size 256 --baseline-n 30

Prints a Markdown table for ``docs/benchmarks_render.md``.
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import galsim
import numpy as np

from features.sources.classes import GALAXY10_CLASSES
from features.sources.synthetic import SyntheticSurvey, render_galaxy
from features.sources.synthetic.params import GalaxyParams
from features.sources.synthetic.render import PXSCALE
from features.sources.synthetic.survey import default_workers


def _galsim_fft(p: GalaxyParams, size: int) -> float:
    """Baseline: draw the smooth components with GalSim's FFT convolution in three bands; returns a checksum."""
    parts = []
    if p.bulge_to_total > 0:
        q = p.bulge_q
        parts.append(galsim.Sersic(n=p.bulge_n, half_light_radius=p.bulge_hlr_arcsec * math.sqrt(q))
                     .shear(q=q, beta=p.pa_deg * galsim.degrees).withFlux(p.bulge_to_total))
    if math.isfinite(p.disk_hlr_arcsec) and p.bulge_to_total < 1:
        parts.append(galsim.Exponential(half_light_radius=p.disk_hlr_arcsec)
                     .shear(q=max(p.axis_ratio, 0.05), beta=p.pa_deg * galsim.degrees)
                     .withFlux(1 - p.bulge_to_total))
    if p.has_bar:
        parts.append(galsim.Sersic(n=0.5, half_light_radius=p.bar_hlr_arcsec * math.sqrt(p.bar_q))
                     .shear(q=p.bar_q, beta=(p.pa_deg + p.bar_angle_deg) * galsim.degrees).withFlux(p.bar_fraction))
    if p.is_merger:
        parts.append(galsim.Sersic(n=p.companion_n, half_light_radius=p.companion_hlr_arcsec)
                     .shift(p.companion_sep_arcsec, 0.0).withFlux(p.companion_flux_ratio))
    gal = galsim.Add(parts)
    total = 0.0
    for fwhm in (p.psf_fwhm_z, p.psf_fwhm_r, p.psf_fwhm_g):
        psf = galsim.Moffat(beta=p.psf_beta, fwhm=fwhm)
        img = galsim.Convolve(gal, psf).drawImage(nx=size, ny=size, scale=PXSCALE)
        total += float(img.array.sum())
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="galaxies for the serial and pool runs")
    ap.add_argument("--baseline-n", type=int, default=20, help="galaxies for the GalSim FFT baseline")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    survey = SyntheticSurvey(n=args.n, seed=args.seed, size=args.size)
    labels = survey.labels
    render_galaxy(args.seed, 0, int(labels[0]), args.size)  # warm caches (cosmology table, imports)

    per_class: dict[int, list[float]] = {k: [] for k in range(10)}
    t_all = time.process_time()
    for i in range(args.n):
        t0 = time.process_time()
        render_galaxy(args.seed, i, int(labels[i]), args.size)
        per_class[int(labels[i])].append(time.process_time() - t0)
    ours_cpu = time.process_time() - t_all
    ours_rate = args.n / ours_cpu

    nb = min(args.baseline_n, args.n)
    t0 = time.process_time()
    for i in range(nb):
        _galsim_fft(survey.params(i), args.size)
    base_cpu = time.process_time() - t0
    base_rate = nb / base_cpu
    t0 = time.process_time()
    for i in range(nb):
        render_galaxy(args.seed, i, int(labels[i]), args.size)
    ours_same_cpu = time.process_time() - t0

    workers = default_workers()
    fresh = SyntheticSurvey(n=args.n, seed=args.seed, size=args.size)
    t0 = time.perf_counter()
    n_done = sum(len(b) for b in fresh.iter_batches(batch_size=50, workers=workers))
    pool_wall = time.perf_counter() - t0

    print(f"machine: {platform.processor() or platform.machine()}, {workers} usable cores, "
          f"numpy {np.__version__}, galsim {galsim.__version__}; {args.size} x {args.size} stamps, seed {args.seed}\n")
    print("| what | galaxies | time | galaxies / s / core |")
    print("|---|---|---|---|")
    print(f"| ours, serial (CPU time) | {args.n} | {ours_cpu:.2f} s | **{ours_rate:.1f}** |")
    print(f"| GalSim FFT baseline, smooth parts only (CPU) | {nb} | {base_cpu:.2f} s | {base_rate:.1f} |")
    print(f"| ours on the same {nb} galaxies (CPU) | {nb} | {ours_same_cpu:.2f} s | {nb / ours_same_cpu:.1f} |")
    print(f"| ours, process pool x{workers} (wall, incl. start-up) | {n_done} | {pool_wall:.2f} s | "
          f"{n_done / pool_wall / workers:.1f} ({n_done / pool_wall:.1f} / s total) |")
    print(f"\nspeed-up over the GalSim FFT baseline (same galaxies, same run): "
          f"{base_cpu / ours_same_cpu:.1f}x\n")
    print("| class | galaxies | ms / galaxy (CPU) |")
    print("|---|---|---|")
    for k in range(10):
        if per_class[k]:
            print(f"| {GALAXY10_CLASSES[k]} | {len(per_class[k])} | {1000 * np.mean(per_class[k]):.1f} |")


if __name__ == "__main__":
    main()
