"""PNG figures of the representation analysis (matplotlib, Agg): maps, a correlation heatmap, R^2 bars.

Each function takes arrays and returns PNG bytes, so the same figure goes to a file, to Dagster
metadata and into the static report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from models.metrics import figure_png

__all__ = ["correlation_heatmap_png", "map_png", "r2_bars_png"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def map_png(coords: np.ndarray, values: Sequence, title: str, *, categorical: bool = False,
            label: str = "") -> bytes:
    """A scatter of 2-D map coordinates coloured by ``values``.

    ``categorical``: one colour per distinct value with a legend (missing values grey); else a
    continuous colour bar (NaN points grey, drawn first), clipped to the 2-98 percentiles.
    """
    plt = _plt()
    xy = np.asarray(coords, dtype=float)
    fig, ax = plt.subplots(figsize=(6.0, 5.0), dpi=80)
    try:
        if categorical:
            vals = np.asarray([("(none)" if v is None else str(v)) for v in values], dtype=object)
            cats = sorted(set(vals))
            cmap = plt.get_cmap("tab10" if len(cats) <= 10 else "tab20")
            for i, c in enumerate(cats):
                m = vals == c
                ax.scatter(xy[m, 0], xy[m, 1], s=6, color="0.7" if c == "(none)" else cmap(i % cmap.N),
                           label=f"{c[:22]} ({int(m.sum())})")
            ax.legend(fontsize=6, markerscale=2, loc="best", frameon=False)
        else:
            v = np.asarray([np.nan if x is None else x for x in values], dtype=float)
            ok = np.isfinite(v)
            ax.scatter(xy[~ok, 0], xy[~ok, 1], s=5, color="0.8", label=f"no value ({int((~ok).sum())})")
            if ok.any():
                lo, hi = np.percentile(v[ok], [2, 98])
                sc = ax.scatter(xy[ok, 0], xy[ok, 1], s=6, c=v[ok], cmap="viridis", vmin=lo, vmax=hi)
                fig.colorbar(sc, ax=ax, label=label)
            if (~ok).any():
                ax.legend(fontsize=6, frameon=False)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        return figure_png(fig)
    finally:
        plt.close(fig)


def correlation_heatmap_png(rho: np.ndarray, ci_low: np.ndarray, ci_high: np.ndarray, q: np.ndarray,
                            rows: Sequence[str], cols: Sequence[str], title: str) -> bytes:
    """Spearman rho per (quantity row, component column), each cell annotated ``rho [lo, hi]``.

    Cells whose BH q-value is >= 0.05 are hatched, so a colour without support reads as such.
    """
    plt = _plt()
    r = np.asarray(rho, dtype=float)
    fig, ax = plt.subplots(figsize=(1.3 + 1.15 * len(cols), 0.9 + 0.45 * len(rows)), dpi=80)
    try:
        im = ax.imshow(np.nan_to_num(r), vmin=-1, vmax=1, cmap="RdBu_r", aspect="auto")
        for i in range(r.shape[0]):
            for j in range(r.shape[1]):
                if not np.isfinite(r[i, j]):
                    ax.text(j, i, "n/a", ha="center", va="center", fontsize=6)
                    continue
                ax.text(j, i, f"{r[i, j]:+.2f}\n[{ci_low[i, j]:+.2f}, {ci_high[i, j]:+.2f}]", ha="center",
                        va="center", fontsize=5.5, color="white" if abs(r[i, j]) > 0.6 else "black")
                if not (q[i, j] < 0.05):
                    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///",
                                               edgecolor="0.5", linewidth=0))
        ax.set_xticks(range(len(cols)), cols, fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_title(title + "  (hatched: BH q >= 0.05)", fontsize=8)
        fig.colorbar(im, ax=ax, label="Spearman rho", fraction=0.046, pad=0.04)
        return figure_png(fig)
    finally:
        plt.close(fig)


def r2_bars_png(r2: Mapping[str, Mapping[str, tuple[float, float, float]]], title: str) -> bytes:
    """Grouped bars: for each quantity, the cross-validated R^2 of every feature set, with 95 % CIs.

    ``r2[quantity][feature_set] = (value, ci_low, ci_high)``; bars below -0.2 are clipped there.
    """
    plt = _plt()
    quantities = list(r2)
    sets = sorted({s for q in r2.values() for s in q})
    fig, ax = plt.subplots(figsize=(1.6 + 0.9 * len(quantities), 4.0), dpi=80)
    try:
        width = 0.8 / max(len(sets), 1)
        for k, s in enumerate(sets):
            vals = np.array([r2[q].get(s, (np.nan,) * 3) for q in quantities], dtype=float).reshape(-1, 3)
            x = np.arange(len(quantities)) + (k - (len(sets) - 1) / 2) * width
            v = np.clip(vals[:, 0], -0.2, 1)
            err = np.abs(np.stack([v - np.clip(vals[:, 1], -0.2, 1), np.clip(vals[:, 2], -0.2, 1) - v]))
            ax.bar(x, v, width, yerr=np.nan_to_num(err), capsize=2, label=s)
        ax.axhline(0, color="k", linewidth=0.6)
        ax.set_xticks(range(len(quantities)), quantities, rotation=35, ha="right", fontsize=7)
        ax.set_ylabel("cross-validated R^2 (grouped folds)")
        ax.set_ylim(-0.2, 1.0)
        ax.legend(fontsize=7, frameon=False)
        ax.set_title(title, fontsize=9)
        return figure_png(fig)
    finally:
        plt.close(fig)
