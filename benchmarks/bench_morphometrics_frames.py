"""Morphometrics cost against frame size and galaxy size, and statmorph on its stamp against the whole frame.

Two tables, every configuration on the same planes in one run:

1. **Frame size, same galaxy**: one seeded Sersic galaxy (64 x 64 model, n = 1.5, r_eff = 5 px) with a
   fainter neighbour, placed at the centre of noise frames of 160 to 1024 pixels. Per frame: our
   segmentation (background, detection, deblending), statmorph given the whole frame
   (``MorphOptions(cutout=False)``) and given only its stamp (the default), CPU seconds each.
2. **Real frames, galaxy size**: ``--n`` random 423 x 423 SDSS composites of ``../shared/data/gz1_sdss/``
   (r plane), at their own size and resampled to half size (the same galaxies at half the pixels),
   sorted into bins of the central segment's area. Per bin: segmentation, statmorph whole frame, statmorph
   on the stamp, and the stamp's side.

Then the largest difference of every quantity between the whole-frame and the stamp measurement over all
planes of both tables (relative; the Sersic fit starts from a centre rounded differently, so it may
differ in the last digits of its stopping point).

Usage (under the shared lock: about 2-4 minutes at ``--n 12``)::

    flock /tmp/astrovision-heavy.lock .venv/bin/python benchmarks/bench_morphometrics_frames.py --n 12
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features.morphometrics import (  # noqa: E402
    QUANTITIES,
    MorphOptions,
    Plane,
    measure_plane,
    measurement_plane,
    segment_central,
    statmorph_stamp,
)

SDSS = ROOT.parent / "shared" / "data" / "gz1_sdss" / "images"


def sersic_galaxy(size: int, seed: int) -> np.ndarray:
    """The tests' galaxy (``tests/test_morphometrics.py``: Sersic n 1.5 plus a neighbour) in a noise frame."""
    from astropy.modeling.models import Sersic2D

    def model(n: float, r_eff: float, total: float) -> np.ndarray:
        k = 5
        y, x = (np.mgrid[: 64 * k, : 64 * k] + 0.5) / k - 0.5
        fine = Sersic2D(amplitude=1.0, r_eff=r_eff, n=n, x_0=32, y_0=32, ellip=0.3, theta=0.5)(x, y)
        m = ndi.gaussian_filter(fine.reshape(64, k, 64, k).mean(axis=(1, 3)), 2.5 / 2.355)
        return m * total / m.sum()

    frame = np.random.default_rng(seed).normal(0.0, 0.5, (size, size))
    c = size // 2
    frame[c - 32 : c + 32, c - 32 : c + 32] += model(1.5, 5.0, 1e4)
    frame[c - 32 : c + 32, c + 10 : c + 74] += model(4.0, 2.0, 2e3)
    return frame


def time_plane(plane: Plane, fit_sersic: bool = True, repeat: int = 1) -> dict:
    """CPU seconds of segmentation, statmorph on the whole frame and on its stamp (the least of ``repeat``
    tries, taken in turn so load changes hit all three alike); both records."""
    best = {"seg_s": math.inf, "full_s": math.inf, "cut_s": math.inf}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(repeat):
            c0 = time.process_time()
            seg = segment_central(plane.data, noise_floor=plane.noise_floor)
            t_seg = time.process_time() - c0
            best["seg_s"] = min(best["seg_s"], t_seg)
            out = {"area": seg.area, "stamp": 0}
            if seg.segmap is not None:
                rows, cols = statmorph_stamp(seg.segmap)
                out["stamp"] = max(rows.stop - rows.start, cols.stop - cols.start)
            for key, cutout in (("full", False), ("cut", True)):
                c0 = time.process_time()
                out[key] = measure_plane(plane, options=MorphOptions(fit_sersic=fit_sersic, time_limit_s=0,
                                                                     cutout=cutout))
                best[f"{key}_s"] = min(best[f"{key}_s"], max(time.process_time() - c0 - t_seg, 0.0))  # it segments again
    return {**out, **best}


def worst(rows: list[dict]) -> dict[str, float]:
    """Largest relative difference per quantity, stamp against whole frame (NaN mismatches count as inf)."""
    out = {}
    for q in QUANTITIES:
        d = 0.0
        for r in rows:
            a, b = r["full"][q], r["cut"][q]
            if math.isnan(a) != math.isnan(b):
                d = math.inf
            elif not math.isnan(a):
                d = max(d, abs(a - b) / max(abs(a), 1e-12))
        out[q] = d
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12, help="real SDSS frames (random, seeded)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default="160,256,423,640,1024", help="frame sides of table 1")
    ap.add_argument("--repeat", type=int, default=3, help="tries per frame of table 1 (the least CPU time is kept)")
    args = ap.parse_args(argv)
    print(f"# {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; CPU seconds per plane\n")
    every: list[dict] = []

    print("## 1. Same galaxy, growing frame (synthetic, Sersic fit on)\n")
    print("| frame | segment px | stamp side | segmentation s | statmorph, whole frame s | statmorph, stamp s | total whole / total stamp |")
    print("|---|---|---|---|---|---|---|")
    time_plane(Plane(sersic_galaxy(256, seed=1), "r", "flux"))  # warm-up: imports, caches
    for size in (int(s) for s in args.sizes.split(",")):
        r = time_plane(Plane(sersic_galaxy(size, seed=size), "r", "flux"), repeat=args.repeat)
        every.append(r)
        ratio = (r["seg_s"] + r["full_s"]) / (r["seg_s"] + r["cut_s"])
        print(f"| {size} | {r['area']} | {r['stamp']} | {r['seg_s']:.3f} | {r['full_s']:.3f} | {r['cut_s']:.3f} | {ratio:.2f}x |")

    files = sorted(SDSS.glob("*.jpg")) if args.n > 0 else []
    pick = np.random.default_rng(args.seed).choice(len(files), size=min(args.n, len(files)), replace=False) if files else []
    real = []
    for i in sorted(pick):
        rgb = np.asarray(Image.open(files[i]).convert("RGB"))
        for scale in (1, 2):
            img = rgb if scale == 1 else np.asarray(Image.fromarray(rgb).resize((rgb.shape[1] // 2, rgb.shape[0] // 2),
                                                                             Image.Resampling.LANCZOS))
            plane = measurement_plane(img, image_kind="rgb_composite", bands="i,r,g", band="r")
            r = time_plane(plane)
            r["frame"] = img.shape[0]
            real.append(r)
    every.extend(real)
    print(f"\n## 2. Real SDSS composites ({len(pick)} galaxies, r plane, 423 px and resampled to 211 px), "
          "by central segment area\n")
    print("| frame | segment px | planes | median stamp side | segmentation s | statmorph, whole frame s "
          "| statmorph, stamp s | total s per galaxy |")
    print("|---|---|---|---|---|---|---|---|")
    bins = [(0, 2000), (2000, 8000), (8000, 20000), (20000, 10**9)]
    for frame in sorted({r["frame"] for r in real}):
        for lo, hi in bins:
            sel = [r for r in real if r["frame"] == frame and lo <= r["area"] < hi]
            if not sel:
                continue
            mean = {k: float(np.mean([r[k] for r in sel])) for k in ("seg_s", "full_s", "cut_s")}
            label = f"{lo:,}-{hi:,}" if hi < 10**9 else f">= {lo:,}"
            print(f"| {frame} | {label} | {len(sel)} | {int(np.median([r['stamp'] for r in sel]))} | {mean['seg_s']:.3f} | "
                  f"{mean['full_s']:.3f} | {mean['cut_s']:.3f} | {mean['seg_s'] + mean['cut_s']:.2f} |")

    diffs = worst(every)
    print(f"\n## Stamp against whole frame: largest relative difference over all {len(every)} planes\n")
    print("| quantity | max rel |")
    print("|---|---|")
    for q, d in diffs.items():
        print(f"| {q} | {d:.1e} |")
    flags_equal = all(r["full"]["flags"] == r["cut"]["flags"] for r in every)
    print(f"\nidentical flags on every plane: {flags_equal}; load average at end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
