"""Benchmark the morphometrics stage against plain statmorph, in the same run, on real DECaLS stamps.

Galaxy10 DECaLS (17,736 galaxies of 256 x 256 RGB) is not on the development machines; the 370 Galaxy
Zoo DECaLS ring-sample stamps in ``../shared/data/gz_decals_rings/`` are the same kind of image (same
survey, size and composite), so they stand in for it. Every configuration measures the same galaxies
with the same segmentation:

* ``plain``: ``statmorph.SourceMorphology`` on the full stamp with the Sersic fit (statmorph's default);
  the baseline every ratio is taken against.
* ``fast``: :class:`features.morphometrics.fast.FastSourceMorphology` with the Sersic fit.
* ``fast_nosersic``: the same without the Sersic fit.
* ``fast_before`` (with ``--before REF``): the fast class as committed at git ``REF`` (its ``fast.py`` and
  ``sersic.py``), measured in the same interleaved loop, so a change to the fast path is timed against
  the code it replaces on the same galaxies under the same load.
* ``fast_pool``: ``fast`` through :func:`features.morphometrics.measure_batch` with ``--workers``
  processes (wall time, so it includes worker start-up and inter-process transfer).

Printed: galaxies per second, seconds per galaxy per core, speed-up over ``plain``, the projected time
for 17,736 galaxies on 2 cores, and the largest absolute and relative difference of every quantity from
``plain``. ``--profile`` adds where plain statmorph spends its time (per statmorph quantity, CPU seconds),
``--profile-fast`` the same for the fast class (and ``--before``'s);
``--cprofile`` adds cProfile's top functions of the ``fast`` configuration (what is left to cut).

Usage::

    .venv/bin/python benchmarks/bench_morphometrics.py --n 30 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import subprocess
import sys
import time
import types
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import statmorph
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import features.morphometrics.measure as measure_module  # noqa: E402
from features.morphometrics import (  # noqa: E402
    QUANTITIES,
    SERSIC_QUANTITIES,
    MorphInput,
    MorphOptions,
    measure_batch,
    measure_image,
    measurement_plane,
    segment_central,
)
from features.morphometrics.measure import statmorph_stamp  # noqa: E402

GALAXY10_N = 17_736
RINGS = ROOT.parent / "shared" / "data" / "gz_decals_rings"


def load(n: int, seed: int) -> list[MorphInput]:
    files = sorted((RINGS / "images").glob("*.png"))
    pick = np.random.default_rng(seed).choice(len(files), size=min(n, len(files)), replace=False)
    return [MorphInput(f"folder:{files[i].stem}", np.asarray(Image.open(files[i]).convert("RGB")),
                       "rgb_composite", "z,r,g", 0.262) for i in sorted(pick)]


def fast_class_at(ref: str) -> type[statmorph.SourceMorphology]:
    """``FastSourceMorphology`` as committed at git ``ref`` (or in the project tree at directory ``ref``).

    Its ``fast.py`` and ``sersic.py`` are read with ``git show`` (or from the tree) and executed as two
    private modules (the former importing the latter), so both versions can run in one process.
    """
    def source(name: str) -> str:
        if Path(ref).is_dir():
            return (Path(ref) / "features" / "morphometrics" / name).read_text()
        return subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:features/morphometrics/{name}"],
                              check=True, capture_output=True, text=True).stdout

    sersic = types.ModuleType("morph_before_sersic")
    exec(compile(source("sersic.py"), f"{ref}:sersic.py", "exec"), sersic.__dict__)
    sys.modules[sersic.__name__] = sersic
    fast = types.ModuleType("morph_before_fast")
    code = source("fast.py").replace("from features.morphometrics.sersic import", "from morph_before_sersic import")
    exec(compile(code, f"{ref}:fast.py", "exec"), fast.__dict__)
    return fast.FastSourceMorphology


@contextlib.contextmanager
def measuring_with(cls: type | None) -> Iterator[None]:
    """Within the block, :func:`measure_image` measures with ``cls`` (the stage's own class if None)."""
    if cls is None:
        yield
        return
    saved = measure_module.morphology_class
    measure_module.morphology_class = lambda: cls
    try:
        yield
    finally:
        measure_module.morphology_class = saved


def run_interleaved(items: list[MorphInput], configs: dict[str, MorphOptions], band: str,
                    classes: dict[str, type] | None = None) -> tuple[dict[str, list[dict]], dict[str, float], dict[str, float]]:
    """Every configuration on each galaxy in turn, so load changes on a shared machine hit all alike.

    ``classes`` names a fast class to measure with per configuration (default: the stage's). Returns
    records, wall seconds and CPU seconds (``time.process_time``) per configuration.
    """
    classes = classes or {}
    recs: dict[str, list[dict]] = {k: [] for k in configs}
    wall = dict.fromkeys(configs, 0.0)
    cpu = dict.fromkeys(configs, 0.0)
    for it in items:
        for name, opt in configs.items():
            with measuring_with(classes.get(name)):
                w0, c0 = time.perf_counter(), time.process_time()
                recs[name].append(measure_image(it.image, image_kind=it.image_kind, bands=it.bands, band=band,
                                                pxscale=it.pxscale, options=opt))
                wall[name] += time.perf_counter() - w0
                cpu[name] += time.process_time() - c0
    return recs, wall, cpu


def differences(base: list[dict], other: list[dict], names: tuple[str, ...]) -> dict[str, tuple[float, float, int]]:
    """Largest |a - b| and |a - b| / |a| per quantity over galaxies where both are finite, and NaN mismatches."""
    out = {}
    for q in names:
        a = np.array([r[q] for r in base], float)
        b = np.array([r[q] for r in other], float)
        both = np.isfinite(a) & np.isfinite(b)
        mismatch = int((np.isfinite(a) != np.isfinite(b)).sum())
        d = np.abs(a[both] - b[both])
        rel = d / np.maximum(np.abs(a[both]), 1e-12)
        out[q] = (float(d.max()) if d.size else math.nan, float(rel.max()) if rel.size else math.nan, mismatch)
    return out


def profile_plain(items: list[MorphInput], band: str, cls: type | None = None) -> dict[str, float]:
    """CPU seconds per galaxy spent in each statmorph quantity (lazy properties timed in evaluation order).

    Plain statmorph by default (on the whole plane); with ``cls`` a fast class, measured as the stage
    does (on statmorph's stamp, inside the class's own fast block), with the Sersic fit.
    """
    names = statmorph.statmorph._quantity_names
    totals: dict[str, float] = {}

    def timed_loop(self) -> None:
        for name in names:
            t = time.process_time()
            _ = self[name]
            totals[name] = totals.get(name, 0.0) + time.process_time() - t

    if cls is None:
        Timed = type("Timed", (statmorph.SourceMorphology,), {"_calculate_morphology": timed_loop})
    else:  # the fast classes run statmorph's quantities in _calculate_quantities, inside their fast block
        Timed = type("Timed", (cls,), {"_calculate_quantities": timed_loop})

    seg_time = 0.0
    for it in items:
        plane = measurement_plane(it.image, image_kind=it.image_kind, bands=it.bands, band=band)
        t = time.process_time()
        seg = segment_central(plane.data, noise_floor=plane.noise_floor)
        seg_time += time.process_time() - t
        if seg.segmap is None:
            continue
        stamp = statmorph_stamp(seg.segmap) if cls is not None else (slice(None), slice(None))
        image = seg.image[stamp]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Timed(image, seg.segmap[stamp], 1, mask=seg.mask[stamp], weightmap=np.full_like(image, seg.rms))
    totals = {k: v / len(items) for k, v in totals.items()}
    totals["(our segmentation)"] = seg_time / len(items)
    return totals


def print_profile(prof: dict[str, float], what: str) -> None:
    """The per-quantity table of :func:`profile_plain`'s result, largest first."""
    total = sum(prof.values())
    print(f"\nWhere {what} spends its time ({total:.3f} CPU s/galaxy with our segmentation; each quantity "
          "includes the lazy properties it is the first to need):\n")
    print("| quantity (first to need it) | CPU s/galaxy | share |")
    print("|---|---|---|")
    for k, v in sorted(prof.items(), key=lambda kv: -kv[1])[:10]:
        print(f"| {k} | {v:.3f} | {v / total:.0%} |")


def print_profiles(args: argparse.Namespace, items: list[MorphInput], classes: dict[str, type]) -> None:
    """The per-quantity profiles the arguments ask for (``--profile``, ``--profile-fast``)."""
    if args.profile:
        print_profile(profile_plain(items, args.band), "plain statmorph")
    if args.profile_fast:
        if "fast_before" in classes:
            print_profile(profile_plain(items, args.band, classes["fast_before"]), f"the fast class at {args.before}")
        print_profile(profile_plain(items, args.band, measure_module.morphology_class()), "the fast class")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30, help="galaxies (random, seeded, from the 370)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--band", default="r")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="also time each statmorph quantity (plain)")
    ap.add_argument("--cprofile", action="store_true", help="also cProfile the fast configuration")
    ap.add_argument("--profile-fast", action="store_true",
                    help="also time each statmorph quantity of the fast class (and of --before's)")
    ap.add_argument("--before", metavar="REF", help="also time the fast class as committed at this git ref "
                    "(or in the project tree at this directory)")
    ap.add_argument("--no-pool", action="store_true", help="skip the process-pool configuration")
    ap.add_argument("--profile-only", action="store_true",
                    help="only the per-quantity profiles (--profile / --profile-fast), no timed comparison")
    args = ap.parse_args(argv)
    items = load(args.n, args.seed)
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    print(f"# {len(items)} GZ DECaLS stamps (256x256 RGB, band {args.band}); {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load average {load_avg:.1f} at start; statmorph {statmorph.__version__}\n")

    configs = {
        "plain": MorphOptions(fast=False, fit_sersic=True, time_limit_s=0),
        "fast": MorphOptions(fast=True, fit_sersic=True, time_limit_s=0),
        "fast_nosersic": MorphOptions(fast=True, fit_sersic=False, time_limit_s=0),
    }
    classes = {}
    if args.before:
        configs = {"plain": configs["plain"], "fast_before": configs["fast"], **{k: v for k, v in configs.items() if k != "plain"}}
        classes["fast_before"] = fast_class_at(args.before)
        print(f"fast_before: the fast class at {args.before}\n")
    measure_image(items[0].image, image_kind=items[0].image_kind, bands=items[0].bands, band=args.band,
                  pxscale=items[0].pxscale, options=configs["fast"])  # warm-up: loads the compiled kernels
    if args.profile_only:
        print_profiles(args, items, classes)
        print(f"load average at end {os.getloadavg()[0]:.1f}")
        return 0
    results, times, cpu = run_interleaved(items, configs, args.band, classes)
    if not args.no_pool:
        t0 = time.perf_counter()
        pooled = measure_batch(items, bands=[args.band], options=configs["fast"], workers=args.workers)
        times["fast_pool"] = time.perf_counter() - t0
        results["fast_pool"] = pooled
    else:
        results["fast_pool"] = results["fast"]
    print(f"load average at end {os.getloadavg()[0]:.1f}\n")

    n = len(items)
    print("| configuration | cores | wall galaxies/s | wall s/galaxy/core | CPU s/galaxy | speed-up vs plain (CPU; wall) "
          "| Galaxy10 (17,736) on 2 free cores, from CPU s |")
    print("|---|---|---|---|---|---|---|")
    for name, secs in times.items():
        cores = args.workers if name == "fast_pool" else 1
        c = cpu.get(name)
        cpu_txt = f"{c / n:.3f}" if c is not None else "-"
        speed = f"{cpu['plain'] / c:.2f}x; {times['plain'] / secs:.2f}x" if c is not None else f"-; {times['plain'] / secs:.2f}x"
        projected = f"{GALAXY10_N * c / n / 2 / 60:.0f} min" if c is not None else "-"
        print(f"| {name} | {cores} | {n / secs:.2f} | {secs * cores / n:.3f} | {cpu_txt} | {speed} | {projected} |")

    print("\nLargest difference from plain statmorph (same galaxies, same segmentation):\n")
    before = "fast_before" in results
    print("| quantity | fast: max abs | fast: max rel | fast_pool: max rel | NaN mismatches |"
          + (" fast_before: max rel | fast vs fast_before: max rel |" if before else ""))
    print("|---|---|---|---|---|" + ("---|---|" if before else ""))
    diff_fast = differences(results["plain"], results["fast"], QUANTITIES)
    diff_pool = differences(results["plain"], results["fast_pool"], QUANTITIES)
    if before:
        diff_before = differences(results["plain"], results["fast_before"], QUANTITIES)
        diff_step = differences(results["fast_before"], results["fast"], QUANTITIES)
    for q in QUANTITIES:
        a, r, m = diff_fast[q]
        extra = f" {diff_before[q][1]:.2e} | {diff_step[q][1]:.2e} |" if before else ""
        print(f"| {q} | {a:.2e} | {r:.2e} | {diff_pool[q][1]:.2e} | {m + diff_pool[q][2]} |{extra}")
    nos = differences(results["plain"], results["fast_nosersic"],
                      tuple(q for q in QUANTITIES if q not in SERSIC_QUANTITIES))
    worst = max(nos.items(), key=lambda kv: kv[1][1] if math.isfinite(kv[1][1]) else -1)
    print(f"\nfast_nosersic: largest relative difference of any non-Sersic quantity {worst[1][1]:.2e} ({worst[0]}).")
    flags = [r["statmorph_flag"] for r in results["plain"]]
    print(f"statmorph flag counts (plain): { {f: flags.count(f) for f in sorted(set(flags), key=str)} }; "
          f"identical flags in fast: {flags == [r['statmorph_flag'] for r in results['fast']]}, "
          f"flag_sersic: {[r['flag_sersic'] for r in results['plain']] == [r['flag_sersic'] for r in results['fast']]}")

    print_profiles(args, items, classes)
    if args.cprofile:
        print(f"\ncProfile of `fast` on the same {n} galaxies (top functions by own time):\n")
        print("```")
        print(cprofile_fast(items, configs["fast"], args.band))
        print("```")
    return 0


def cprofile_fast(items: list[MorphInput], options: MorphOptions, band: str, top: int = 25) -> str:
    """cProfile's table of the ``top`` functions by own time, measuring every galaxy once with ``options``."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    for it in items:
        measure_image(it.image, image_kind=it.image_kind, bands=it.bands, band=band, pxscale=it.pxscale, options=options)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    root = str(ROOT / ".venv") + "/"
    return "\n".join(line.replace(root, "").replace(str(ROOT) + "/", "") for line in out.getvalue().splitlines()
                     if line.strip())


if __name__ == "__main__":
    raise SystemExit(main())
