"""Does ``MORPH_CENTRE_BLENDED`` track the neighbours that really overlap? Prints markdown for docs/benchmarks_morphometrics.md.

**Demo survey** (``features.sources.synthetic``, the ``morphometrics`` path: r band after inverting the
stretch). The truth knows every neighbour: the field stars and background galaxies
(``features.sources.synthetic.observe.draw_field``) and, for mergers, the companion. Definitions:

* a neighbour's **footprint**: the pixels where its own noiseless, PSF-convolved r-band light (rendered
  alone) exceeds the r-band sky sigma, the level of the galaxy's true mask (``truth.mask_png``);
* a neighbour **touches** the galaxy when its footprint touches the true mask (8-connected); a merging
  companion always does (it lies inside the true mask by construction);
* the galaxy truly has an **overlapping neighbour** when a touching neighbour's r flux (in the stamp)
  is at least ``--truth-fraction`` (5 %) of the galaxy's own (the noiseless target's).

The flag before this change was raised whenever any piece of the central detection was deblended off
(now ``MORPH_DEBLENDED``); it now needs a touching neighbour whose light above the saddle is at least
``blend_flux_fraction`` (5 %) of the central source's flux (``segmentation.neighbour_fraction``).
Precision and recall come with exact (Clopper-Pearson) 95 % intervals.

``--outcome`` also measures every galaxy again with its neighbours subtracted from the flux (same noise)
and counts the galaxies whose values move beyond the tolerances in :data:`TOLERANCE`: what a user who
filters on ``morph_ok`` is protected from.

**Real galaxies**: the first ``--rings`` ring galaxies of ``../shared/data/gz_decals_rings`` (r channel of
the composite, ``channel_proxy``), flag rates only; ``--png DIR`` writes contact sheets of the flagged
ones (segment outline green, masked neighbours red) to look at.

Usage::

    .venv/bin/python benchmarks/validate_centre_blended.py --n 300 --rings 100 --workers 2 --outcome
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from scipy.stats import binomtest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features.flags import Flag, morph_ok  # noqa: E402
from features.morphometrics import MorphOptions, measure_plane, measurement_plane  # noqa: E402
from features.morphometrics.segmentation import segment_central  # noqa: E402

RINGS = ROOT.parent / "shared" / "data" / "gz_decals_rings"
PXSCALE = 0.262
TOLERANCE = {"concentration": 0.1, "gini": 0.02, "m20": 0.1, "asymmetry": 0.03}
"""A galaxy's values are 'moved by its neighbours' when one of these changes by more (absolute)."""
OLD, NEW = int(Flag.MORPH_DEBLENDED), int(Flag.MORPH_CENTRE_BLENDED)


def _touching_neighbours(g) -> list[tuple[str, float]]:
    """``(kind, r flux / galaxy r flux)`` of every neighbour whose footprint touches the true mask."""
    from features.sources.synthetic.observe import convolve_bands, render_field

    p, t = g.params, g.truth
    size = g.mask.shape[0]
    galaxy_flux = float(g.target[..., 1].sum())
    near = ndi.binary_dilation(g.mask, structure=np.ones((3, 3), dtype=bool))
    out = []
    if g.field:
        scenes = np.stack([render_field([o], size)[1:2] for o in g.field])  # r only: (k, 1, H, W)
        light = convolve_bands(scenes, [(p.psf_fwhm_r, p.psf_beta)])[:, 0]
        for o, img in zip(g.field, light):
            if (near & (img > p.sky_sigma_r)).any():
                out.append((o.kind, float(img.sum()) / galaxy_flux))
    if p.is_merger:
        ang = math.radians(p.companion_angle_deg)
        sep = min(p.companion_sep_arcsec / PXSCALE, 0.33 * size)
        x, y = round(t["centre_x_px"] + sep * math.cos(ang)), round(t["centre_y_px"] + sep * math.sin(ang))
        if 0 <= x < size and 0 <= y < size and g.mask[y, x]:
            share = p.companion_flux_ratio / (1.0 + p.companion_flux_ratio + p.tail_fraction)
            out.append(("companion", float(share)))
    return out


def _neighbour_free_rgb(g) -> np.ndarray:
    """The observed composite with the neighbours' light taken out of the flux (same noise, same stretch)."""
    from features.sources.synthetic import DEFAULT_STRETCH, apply_stretch
    from features.sources.synthetic.observe import convolve_bands, render_field

    p = g.params
    if not g.field:
        return g.rgb
    psfs = [(p.psf_fwhm_z, p.psf_beta), (p.psf_fwhm_r, p.psf_beta), (p.psf_fwhm_g, p.psf_beta)]
    light = convolve_bands(render_field(g.field, g.mask.shape[0])[None], psfs)[0]
    return apply_stretch(g.flux - np.moveaxis(light, 0, -1), DEFAULT_STRETCH)


def demo_row(n: int, seed: int, row: int, outcome: bool) -> dict:
    """Truth and measurement for one demo galaxy."""
    from features.sources.synthetic import DEFAULT_STRETCH, SyntheticSurvey

    g = SyntheticSurvey(n=n, seed=seed).render(row)
    plane = measurement_plane(g.rgb, image_kind="rgb_composite", bands="z,r,g", band="r", stretch=DEFAULT_STRETCH)
    seg = segment_central(plane.data, noise_floor=plane.noise_floor)
    out = {"row": row, "label": g.truth["label_name"], "neighbours": _touching_neighbours(g), "seg_flags": seg.flags,
           "blend_fraction": seg.blend_fraction}
    if outcome:
        opt = MorphOptions(fit_sersic=False)
        seen = measure_plane(plane, options=opt)
        clean_plane = measurement_plane(_neighbour_free_rgb(g), image_kind="rgb_composite", bands="z,r,g", band="r",
                                        stretch=DEFAULT_STRETCH)
        clean = measure_plane(clean_plane, options=opt)
        out["flags"] = seen["flags"]
        out["moved"] = any(not abs(seen[q] - clean[q]) <= tol for q, tol in TOLERANCE.items())
    return out


def _ci(k: int, n: int) -> str:
    if n == 0:
        return "n/a (0 of 0)"
    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    return f"{k / n:.2f} [{ci.low:.2f}, {ci.high:.2f}] ({k}/{n})"


def confusion(name: str, flagged: np.ndarray, truth: np.ndarray) -> str:
    """One markdown row: counts, precision and recall with 95 % intervals."""
    tp, fp = int((flagged & truth).sum()), int((flagged & ~truth).sum())
    fn, tn = int((~flagged & truth).sum()), int((~flagged & ~truth).sum())
    return (f"| {name} | {int(flagged.sum())} ({flagged.mean():.0%}) | {tp} | {fp} | {fn} | {tn} | "
            f"{_ci(tp, tp + fp)} | {_ci(tp, tp + fn)} |")


HEADER = ("| flag | flagged | TP | FP | FN | TN | precision [95 % CI] | recall [95 % CI] |\n"
          "|---|---|---|---|---|---|---|---|")


def demo(n: int, seed: int, workers: int, truth_fraction: float, outcome: bool) -> None:
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        rows = list(pool.map(demo_row, [n] * n, [seed] * n, range(n), [outcome] * n, chunksize=4))
    dt = time.perf_counter() - t0
    old = np.array([bool(r["seg_flags"] & OLD) for r in rows])
    new = np.array([bool(r["seg_flags"] & NEW) for r in rows])
    blend = np.array([r["blend_fraction"] for r in rows])
    touch = np.array([bool(r["neighbours"]) for r in rows])

    def bright(fraction: float) -> np.ndarray:
        return np.array([any(f >= fraction for _, f in r["neighbours"]) for r in rows])

    truth = bright(truth_fraction)
    print(f"### Demo survey: {n} galaxies (seed {seed}), r band after inverting the stretch ({dt:.0f} s with "
          f"{workers} workers)\n")
    kinds = {k: sum(any(kind == k for kind, _ in r["neighbours"]) for r in rows) for k in ("star", "galaxy", "companion")}
    bright_kinds = {k: sum(any(kind == k and f >= truth_fraction for kind, f in r["neighbours"]) for r in rows)
                    for k in kinds}
    print("| truth | galaxies | with a star | with a background galaxy | with a merging companion |\n|---|---|---|---|---|")
    print(f"| a neighbour's footprint touches the true mask | {touch.sum()} ({touch.mean():.0%}) | {kinds['star']} | "
          f"{kinds['galaxy']} | {kinds['companion']} |")
    print(f"| ... and holds >= {truth_fraction:.0%} of the galaxy's flux (overlapping neighbour) | {truth.sum()} "
          f"({truth.mean():.0%}) | {bright_kinds['star']} | {bright_kinds['galaxy']} | {bright_kinds['companion']} |\n")
    print(f"Against 'overlapping neighbour' (touching, >= {truth_fraction:.0%} of the flux):\n")
    print(HEADER)
    print(confusion("before: any piece deblended off (now `MORPH_DEBLENDED`)", old, truth))
    print(confusion("after: `MORPH_CENTRE_BLENDED` (neighbour >= 5 % above the saddle)", new, truth))
    print("\nAgainst 'a neighbour's footprint touches the true mask' (any brightness):\n")
    print(HEADER)
    print(confusion("before: any piece deblended off", old, touch))
    print(confusion("after: `MORPH_CENTRE_BLENDED`", new, touch))
    print("\nThe same threshold for truth and flag, other values (flag from the measured blend fraction):\n")
    print(HEADER)
    for f in (0.02, 0.05, 0.10):
        print(confusion(f"flag at {f:.0%} vs truth at {f:.0%}", blend >= f, bright(f)))
    print()
    if outcome:
        moved = np.array([r["moved"] for r in rows])
        untrusted = np.array([not morph_ok(r["flags"]) for r in rows])
        tol = ", ".join(f"{q} {t:g}" for q, t in TOLERANCE.items())
        print(f"Measured again with the neighbours' light subtracted (same noise): {moved.sum()} of {n} galaxies "
              f"({moved.mean():.0%}) move beyond the tolerances ({tol}):\n")
        print(HEADER)
        print(confusion("before: any piece deblended off", old, moved))
        print(confusion("after: `MORPH_CENTRE_BLENDED`", new, moved))
        print(confusion("`morph_ok` false", untrusted, moved))
        print()


def _sheet(path: Path, tiles: list[np.ndarray]) -> None:
    if not tiles:
        return
    cols = 5
    h, w, _ = tiles[0].shape
    sheet = np.zeros((h * math.ceil(len(tiles) / cols), w * cols, 3), np.uint8)
    for k, tile in enumerate(tiles):
        sheet[(k // cols) * h:(k // cols + 1) * h, (k % cols) * w:(k % cols + 1) * w] = tile
    Image.fromarray(sheet).save(path)


def _outlined(rgb: np.ndarray, segmap: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    for region, colour in ((segmap > 0, (0, 255, 0)), (mask, (255, 0, 0))):
        out[region ^ ndi.binary_erosion(region)] = colour
    return out


def ring_row(path: str) -> dict:
    """Flags of one real ring galaxy (segmentation and a Sersic-free statmorph run)."""
    rgb = np.asarray(Image.open(path).convert("RGB"))
    plane = measurement_plane(rgb, image_kind="rgb_composite", bands="z,r,g", band="r")
    seg = segment_central(plane.data, noise_floor=plane.noise_floor)
    rec = measure_plane(plane, options=MorphOptions(fit_sersic=False))
    tile = _outlined(rgb, seg.segmap if seg.segmap is not None else np.zeros(rgb.shape[:2]), seg.mask)
    return {"id": Path(path).stem, "flags": rec["flags"], "blend_fraction": seg.blend_fraction, "tile": tile}


def rings(n: int, workers: int, png: Path | None) -> None:
    with open(RINGS / "catalog.csv", newline="") as fh:
        ids = [r["id"] for r in csv.DictReader(fh) if r["ring"] == "1"][:n]
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        rows = list(pool.map(ring_row, [str(RINGS / "images" / f"{i}.png") for i in ids], chunksize=4))
    old = np.array([bool(r["flags"] & OLD) for r in rows])
    new = np.array([bool(r["flags"] & NEW) for r in rows])
    ok = np.array([morph_ok(r["flags"]) for r in rows])
    sat = np.array([bool(r["flags"] & Flag.MORPH_SATURATED) for r in rows])
    print(f"### Real ring galaxies: the first {len(rows)} rings of `gz_decals_rings` (r channel, channel_proxy)\n")
    print("| rows with | rate [95 % CI] |\n|---|---|")
    for name, v in (("before: any piece deblended off (now `MORPH_DEBLENDED`)", old),
                    ("after: `MORPH_CENTRE_BLENDED`", new), ("`MORPH_SATURATED`", sat), ("`morph_ok` true", ok)):
        print(f"| {name} | {_ci(int(v.sum()), len(v))} |")
    print()
    if png is not None:
        png.mkdir(parents=True, exist_ok=True)
        _sheet(png / "rings_centre_blended.png", [r["tile"] for r in rows if r["flags"] & NEW])
        _sheet(png / "rings_deblended_only.png", [r["tile"] for r in rows if r["flags"] & OLD and not r["flags"] & NEW])
        for r in rows:
            if r["flags"] & OLD:
                print(f"- {r['id']}: blend fraction {r['blend_fraction']:.3f}{' (flagged)' if r['flags'] & NEW else ''}")
        print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="demo galaxies (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--truth-fraction", type=float, default=0.05)
    ap.add_argument("--outcome", action="store_true", help="also measure without neighbours (2 statmorph runs each)")
    ap.add_argument("--rings", type=int, default=100, help="real ring galaxies (0: skip)")
    ap.add_argument("--png", type=Path, help="write contact sheets of the flagged rings here")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    if args.n:
        demo(args.n, args.seed, args.workers, args.truth_fraction, args.outcome)
    if args.rings:
        rings(args.rings, args.workers, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
