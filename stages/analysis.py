"""Analysis stage: maps of every embeddings table, their correlations with physics, the figures.

Glue only (no Dagster, no argparse): read the tables, call :mod:`models.representation`, write
``embedding_maps`` / ``embedding_pca`` / ``representation_analysis`` and the PNGs under
``<root>/analysis/``. The ``embedding_maps`` and ``representation_analysis`` assets and the report
call these functions.

Which rows a quantity uses is part of its definition (:data:`QUANTITIES`): morphometrics only where
``morph_ok`` (measured, none of ``features.flags.MORPH_UNTRUSTED`` set), SDSS colours only where the
photometry passed its quality cuts (``phot_quality_ok``), the demo's truth on every galaxy that has it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from warehouse import Warehouse, quote
from warehouse.schemas.embeddings import TABLE_PREFIX, encoder_of_table

__all__ = [
    "METHODS",
    "PCA_MIN_VECTORS",
    "PIXELS",
    "QUANTITIES",
    "UMAP_MIN_VECTORS",
    "AnalysisOutcome",
    "MapsOutcome",
    "Quantity",
    "analyse",
    "build_maps",
    "encoder_tables",
    "figures_dir",
]

METHODS: tuple[str, ...] = ("pca", "umap")
"""The map methods :func:`build_maps` knows."""

PCA_MIN_VECTORS = 3
"""An encoder table with fewer vectors gets no map (named in the outcome, never a made-up layout)."""

UMAP_MIN_VECTORS = 50
"""Fewer vectors get no UMAP (a neighbour graph of a handful of points says nothing; named in the
outcome), so a tiny demo does not pay numba's first compile either."""

PIXELS = "pixels"
"""The ``encoder`` name of the downsampled-image baseline in ``representation_analysis``."""

LogFn = Callable[[str], None]


@dataclass(frozen=True)
class Quantity:
    """A physical quantity: its name in the results, where it is read, and which rows count."""

    name: str
    source: str
    column: str
    subset: str
    """``morph_ok``, ``phot_quality_ok`` or ``all``."""


QUANTITIES: tuple[Quantity, ...] = (
    *(Quantity(c, "galaxy_features", c, "morph_ok")
      for c in ("gini", "m20", "concentration", "asymmetry", "smoothness", "sersic_n")),
    Quantity("g_r", "galaxy_features", "g_r", "phot_quality_ok"),
    Quantity("u_r", "galaxy_features", "u_r", "phot_quality_ok"),
    Quantity("truth_bulge_to_total", "truth", "bulge_to_total", "all"),
    Quantity("truth_sersic_n", "truth", "sersic_n_eff", "all"),
    Quantity("truth_g_r", "truth", "g_r", "all"),
    Quantity("truth_axis_ratio", "truth", "axis_ratio", "all"),
)
"""The quantities :func:`analyse` relates to the embeddings (truth ones only where ``truth`` has rows).

``truth_sersic_n`` is the light-weighted Sersic index of the drawn components,
``B/T * bulge_n + (1 - B/T) * disk_n`` (a missing bulge counts 0, a missing disk n = 1)."""


def figures_dir(wh: Warehouse) -> Path:
    """``<root>/analysis``, where the figures are written (created)."""
    d = Path(wh.local_root) / "analysis"
    d.mkdir(parents=True, exist_ok=True)
    return d


def encoder_tables(wh: Warehouse, encoders: Sequence[str] | None = None) -> list[str]:
    """The embeddings tables with rows (``encoders``: only those; a missing one is a ``ValueError``)."""
    present = sorted(t for t in wh.tables() if t.startswith(TABLE_PREFIX) and wh.count(t) > 0)
    if not encoders:
        return present
    want = [TABLE_PREFIX + e for e in encoders]
    missing = [t for t in want if t not in present]
    if missing:
        raise ValueError(f"no embeddings stored for {', '.join(m[len(TABLE_PREFIX):] for m in missing)}; "
                         f"present: {', '.join(encoder_of_table(t) for t in present) or 'none'}")
    return want


@dataclass(frozen=True)
class _Vectors:
    encoder: str
    ids: list[str]
    x: np.ndarray
    version: int
    weights_origin: str
    weights_sha256: str


def _vectors(wh: Warehouse, table: str) -> _Vectors:
    ds = wh.dataset(table)
    rows = wh.read(table, columns=["galaxy_id", "vector", "weights_origin", "weights_sha256"],
                   version=ds.version).sort_by("galaxy_id")
    col = rows.column("vector").combine_chunks()
    x = np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(rows.num_rows, -1)
    origins = sorted(set(rows.column("weights_origin").to_pylist()))
    shas = sorted(set(rows.column("weights_sha256").to_pylist()))
    return _Vectors(encoder_of_table(table) or table, rows.column("galaxy_id").to_pylist(), x, ds.version,
                    ",".join(origins), ",".join(shas))


@dataclass
class MapsOutcome:
    """What :func:`build_maps` wrote, per encoder."""

    encoders: dict[str, dict[str, Any]] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _map_rows(v: _Vectors, method: str, coords: np.ndarray, fitted: np.ndarray, params: dict) -> pa.Table:
    n = len(v.ids)
    return pa.table({
        "galaxy_id": v.ids, "encoder": [v.encoder] * n, "method": [method] * n,
        "x": coords[:, 0].astype(np.float64), "y": coords[:, 1].astype(np.float64),
        "coords": [list(map(float, c)) for c in coords], "fitted": fitted,
        "params_json": [json.dumps(params)] * n, "embeddings_version": [v.version] * n,
        "weights_origin": [v.weights_origin] * n, "weights_sha256": [v.weights_sha256] * n,
    })


def _colour_values(wh: Warehouse, ids: list[str]) -> dict[str, list]:
    """label_name, gini (morph_ok only) and g-r (quality cuts only) of ``ids``, in that order."""
    feats = wh.sql("SELECT galaxy_id, label_name, CASE WHEN morph_ok THEN gini END AS gini, "
                   "CASE WHEN phot_quality_ok THEN g_r END AS g_r FROM galaxy_features", limit=None)
    by = {r["galaxy_id"]: r for r in feats.to_dicts()}
    return {k: [by.get(i, {}).get(k) for i in ids] for k in ("label_name", "gini", "g_r")}


def _umap_job(args: tuple[np.ndarray, int, int, int]) -> tuple[Any, float | None, float]:
    """One encoder's seeded UMAP, its neighbourhood preservation and seconds: what a pool worker runs."""
    from models.representation import neighbourhood_preservation, umap_map

    x, seed, neighbors, cap = args
    t = time.perf_counter()
    um = umap_map(x, seed=seed, n_neighbors=neighbors, max_fit=cap)
    knn = (round(neighbourhood_preservation(x, um.coords, seed=seed), 4) if np.isfinite(um.coords).all() else None)
    return um, knn, time.perf_counter() - t


def build_maps(wh: Warehouse, *, encoders: Sequence[str] | None = None, methods: Sequence[str] = METHODS,
               n_components: int = 10, seed: int = 0, umap_neighbors: int = 15, umap_max_fit: int | None = None,
               run_id: str | None = None, log: LogFn = lambda _m: None, workers: int | None = None) -> MapsOutcome:
    """PCA and/or UMAP maps of every (or the named) encoder's CLS vectors, stored and drawn.

    Each (encoder, method) range of ``embedding_maps`` is replaced in one commit, so galaxies gone from
    an embeddings table leave the map too; ``embedding_pca`` holds the axes. Figures: the 2-D map
    (UMAP when made, else PC1-PC2) coloured by class, by Gini (``morph_ok`` rows) and by g-r
    (``phot_quality_ok`` rows), as ``<root>/analysis/<encoder>_<method>_<colour>.png``.

    The encoders' UMAPs (seeded, single-threaded each) are fitted side by side in ``workers``
    processes (default: the step's cores, :func:`features.parallel.step_cores`; 1: one after another
    in this process); the maps are the same either way (``tests/test_analysis.py``).

    Raises
    ------
    ValueError
        An unknown method, a named encoder without embeddings, or no embeddings at all.
    """
    from features.parallel import ordered_pool, step_cores
    from models.representation import UMAP_MAX_FIT, pca_map
    from models.representation.plots import map_png

    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"unknown map method(s) {bad or methods}; choose from {', '.join(METHODS)}")
    tables = encoder_tables(wh, encoders)
    if not tables:
        raise ValueError("no embeddings table has rows: run the embeddings asset (astrovision embed) first")
    t0 = time.perf_counter()
    out = MapsOutcome()
    out_dir = figures_dir(wh)
    vectors = [_vectors(wh, table) for table in tables]
    cap = UMAP_MAX_FIT if umap_max_fit is None else int(umap_max_fit)
    mapped = [v for v in vectors if "umap" in methods and len(v.ids) >= max(PCA_MIN_VECTORS, UMAP_MIN_VECTORS)]
    procs = min(len(mapped), step_cores() if workers is None else max(1, workers))  # one process per map at most
    with ordered_pool(procs, preload=["models.representation", "umap"]) as pmap:
        umaps = dict(zip((v.encoder for v in mapped),
                         pmap(_umap_job, [(v.x, seed, umap_neighbors, cap) for v in mapped])))
    for table, v in zip(tables, vectors):
        info: dict[str, Any] = {"rows": len(v.ids), "dim": int(v.x.shape[1]), "embeddings_version": v.version,
                                "weights_origin": v.weights_origin, "weights_sha256": v.weights_sha256}
        shown = None
        if len(v.ids) < PCA_MIN_VECTORS:
            out.notes.append(f"{v.encoder}: {len(v.ids)} vectors, fewer than {PCA_MIN_VECTORS}: no map")
            out.encoders[v.encoder] = {**info, "skipped": out.notes[-1]}
            continue
        if "pca" in methods:
            t = time.perf_counter()
            pm = pca_map(v.x, n_components)
            coords = pm.coords if pm.coords.shape[1] >= 2 else np.pad(pm.coords, ((0, 0), (0, 1)),
                                                                       constant_values=np.nan)
            wh.replace("embedding_maps", _map_rows(v, "pca", coords, np.ones(len(v.ids), bool),
                                                   {"n_components": int(pm.coords.shape[1])}),
                       where=f"encoder = {quote(v.encoder)} AND method = 'pca'", run_id=run_id)
            k = len(pm.explained_variance)
            wh.replace("embedding_pca", pa.table({
                "encoder": [v.encoder] * k, "component": np.arange(1, k + 1, dtype=np.int32),
                "explained_variance": pm.explained_variance, "explained_variance_ratio": pm.explained_variance_ratio,
                "loading": [list(map(float, c)) for c in pm.components], "n_vectors": [len(v.ids)] * k,
                "embeddings_version": [v.version] * k, "weights_origin": [v.weights_origin] * k,
                "weights_sha256": [v.weights_sha256] * k}), where=f"encoder = {quote(v.encoder)}", run_id=run_id)
            info["pca"] = {"components": k, "explained_variance_ratio": [round(float(r), 4) for r in
                                                                         pm.explained_variance_ratio],
                           "seconds": round(time.perf_counter() - t, 3)}
            shown = ("pca", coords[:, :2])
        if "umap" in methods and len(v.ids) < UMAP_MIN_VECTORS:
            out.notes.append(f"{v.encoder}: {len(v.ids)} vectors, fewer than {UMAP_MIN_VECTORS}: no UMAP")
            info["umap"] = {"skipped": out.notes[-1]}
        elif "umap" in methods:
            um, knn, seconds = umaps[v.encoder]
            params = {"n_neighbors": um.n_neighbors, "min_dist": um.min_dist, "seed": seed, "max_fit": cap,
                      "metric": "euclidean"}
            wh.replace("embedding_maps", _map_rows(v, "umap", um.coords, um.fitted, params),
                       where=f"encoder = {quote(v.encoder)} AND method = 'umap'", run_id=run_id)
            info["umap"] = {**params, "fitted": int(um.fitted.sum()),
                            "transformed": int((~um.fitted).sum()),
                            "knn10_preservation": knn, "seconds": round(seconds, 3)}
            shown = ("umap", um.coords)
        log(f"{table}: {info}")
        if shown is None:
            out.encoders[v.encoder] = info
            continue
        method, xy = shown
        colours = _colour_values(wh, v.ids)
        for key, label, cat in (("label_name", "class", True), ("gini", "Gini", False), ("g_r", "g-r", False)):
            path = out_dir / f"{v.encoder}_{method}_{'class' if cat else key}.png"
            title = f"{v.encoder} {method.upper()} by {label}  [{v.weights_origin}]"
            path.write_bytes(map_png(xy, colours[key], title, categorical=cat, label=label))
            out.figures[f"{v.encoder}_{method}_{'class' if cat else key}"] = path
        out.encoders[v.encoder] = info
    out.seconds = time.perf_counter() - t0
    return out


@dataclass
class AnalysisOutcome:
    """What :func:`analyse` wrote: the rows, the figures and per-encoder notes."""

    rows: pa.Table
    figures: dict[str, Path]
    notes: list[str]
    seconds: float


def _quantity_values(wh: Warehouse) -> dict[str, dict[str, float]]:
    """``{quantity name: {galaxy_id: value}}`` for every quantity with at least one usable value."""
    feats = wh.sql("SELECT * FROM galaxy_features", limit=None)
    has_truth = wh.exists("truth") and wh.count("truth") > 0
    truth = None
    if has_truth:
        import polars as pl

        truth = wh.read_polars("truth", columns=["galaxy_id", "bulge_to_total", "bulge_n", "disk_n", "g_r",
                                                 "axis_ratio"]).fill_nan(None)
        bt = pl.col("bulge_to_total")
        truth = truth.with_columns(sersic_n_eff=bt * pl.col("bulge_n").fill_null(0.0)
                                   + (1 - bt) * pl.col("disk_n").fill_null(1.0))
    out: dict[str, dict[str, float]] = {}
    for q in QUANTITIES:
        if q.source == "truth":
            if truth is None:
                continue
            ids, vals = truth["galaxy_id"].to_list(), truth[q.column].to_list()
        else:
            keep = feats if q.subset == "all" else feats.filter(feats[q.subset].fill_null(False))
            ids, vals = keep["galaxy_id"].to_list(), keep[q.column].to_list()
        d = {i: float(v) for i, v in zip(ids, vals) if v is not None and np.isfinite(v)}
        if d:
            out[q.name] = d
    return out


def _pcs(wh: Warehouse, encoder: str, k: int) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    if not wh.exists("embedding_maps"):
        raise ValueError(f"no PCA map of {encoder}: materialize embedding_maps first")
    rows = wh.read("embedding_maps", columns=["galaxy_id", "coords", "embeddings_version", "weights_origin",
                                              "weights_sha256"],
                   where=f"encoder = {quote(encoder)} AND method = 'pca'").sort_by("galaxy_id")
    if rows.num_rows == 0:
        raise ValueError(f"no PCA map of {encoder}: materialize embedding_maps first")
    coords = np.array(rows.column("coords").to_pylist(), dtype=np.float64)[:, :k]
    meta = {c: rows.column(c)[0].as_py() for c in ("embeddings_version", "weights_origin", "weights_sha256")}
    return rows.column("galaxy_id").to_pylist(), coords, meta


def _pixel_features(wh: Warehouse, ids: list[str]) -> np.ndarray:
    """The gate's pixel features (:func:`models.baselines.pixel_features` of 16 px stamps) of ``ids``."""
    from models.baselines import pixel_features
    from stages.training import pixel_stamps

    return pixel_features(pixel_stamps(wh, ids))


def _add_qvalues(rows: list[dict[str, Any]], qdef: dict[str, Any]) -> None:
    """BH q-values over each family (the rho grid; the ``r2_cv_minus_pixels`` tests), and each row's source."""
    from models.representation import bh_qvalues

    p = np.array([r["p"] for r in rows], dtype=float)
    q = np.full(len(rows), np.nan)
    for family in ("spearman", "r2_cv_minus"):
        sel = np.array([r["statistic"].startswith(family) for r in rows], dtype=bool)
        if sel.any():
            q[sel] = bh_qvalues(p[sel])
    for r, qi in zip(rows, q):
        r["q"] = float(qi)
        r["source"], r["subset"] = qdef[r["quantity"]].source, qdef[r["quantity"]].subset


def _analysis_figures(wh: Warehouse, rows: list[dict[str, Any]], names: list[str], qnames: list[str],
                      r2: dict[str, dict[str, tuple[float, float, float]]],
                      meta: dict[str, dict[str, Any]]) -> dict[str, Path]:
    """The correlation heatmap of each encoder and the R^2 bars, written under :func:`figures_dir`."""
    from models.representation.plots import correlation_heatmap_png, r2_bars_png

    figures: dict[str, Path] = {}
    out_dir = figures_dir(wh)
    for enc in names:
        grid = {(r["quantity"], r["statistic"]): r for r in rows if r["encoder"] == enc
                and r["statistic"].startswith("spearman")}
        cols = sorted({s for _, s in grid}, key=lambda s: int(s.removeprefix("spearman_pc")))
        if not cols or not qnames:
            continue
        mat = {k: np.array([[grid.get((qn, c), {}).get(k, np.nan) for c in cols] for qn in qnames], dtype=float)
               for k in ("value", "ci_low", "ci_high", "q")}
        path = out_dir / f"{enc}_correlations.png"
        path.write_bytes(correlation_heatmap_png(mat["value"], mat["ci_low"], mat["ci_high"], mat["q"], qnames,
                                                 [c.removeprefix("spearman_").upper() for c in cols],
                                                 f"{enc} [{meta[enc]['weights_origin']}]"))
        figures[f"{enc}_correlations"] = path
    if r2:
        path = out_dir / "r2_cv.png"
        path.write_bytes(r2_bars_png(r2, "quantity predicted from each encoder's CLS vectors vs the pixel baseline"))
        figures["r2_cv"] = path
    return figures


def _spearman_job(args: tuple[np.ndarray, np.ndarray, int, int, int]) -> Any:
    """One seeded Spearman estimate (:func:`models.representation.spearman_ci`): what a pool worker runs."""
    from models.representation import spearman_ci

    x, y, n_boot, n_perm, seed = args
    return spearman_ci(x, y, n_boot=n_boot, n_perm=n_perm, seed=seed)


def _r2_job(args: tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, int, int, int, str | None]) -> Any:
    """One quantity's seeded grouped CV R^2 (:func:`models.representation.grouped_cv_r2`) on the rows ``use``
    of every feature set: what a pool worker runs. The rows are taken here, so the step holds one copy of
    the features, not one per quantity."""
    from models.representation import grouped_cv_r2

    feats, use, y, groups, n_folds, n_boot, seed, ref = args
    return grouped_cv_r2({k: f[use] for k, f in feats.items()}, y, groups, n_folds=n_folds, n_boot=n_boot,
                         seed=seed, reference=ref)


def analyse(wh: Warehouse, *, encoders: Sequence[str] | None = None, n_pcs: int = 5, n_boot: int = 1000,
            n_perm: int = 1000, n_folds: int = 5, seed: int = 0, pixel_baseline: bool = True,
            run_id: str | None = None, log: LogFn = lambda _m: None, workers: int | None = None) -> AnalysisOutcome:
    """Spearman rho (bootstrap CI, permutation p, BH q) of the top ``n_pcs`` PCs with each quantity, and
    the grouped CV ridge R^2 of each quantity from every encoder's vectors and the pixel baseline.

    R^2 for a quantity is measured on the galaxies every feature set covers (the intersection of the
    encoder tables and the images), folds grouped by ``duplicate_group`` (a galaxy without one is its
    own group), so encoders and baseline are compared on the same galaxies and folds. BH q-values are
    taken over the whole rho grid (every quantity x encoder x PC) and, separately, over the
    ``r2_cv_minus_pixels`` tests of this call. The rows of the analysed encoders and of ``pixels`` are
replaced in one commit; other encoders' rows stay.

    The estimates (each seeded on its own) are computed by ``workers`` processes (default: the step's
    cores, :func:`features.parallel.step_cores`, from :data:`features.parallel.POOL_MIN_ROWS` galaxies
    in the largest embeddings table; below it the Spearman estimates run on the step's cores as threads,
    :func:`features.parallel.thread_map`; 1: all in this thread); the rows are the same either way.

    Raises
    ------
    ValueError
        No embeddings, or an encoder without a PCA map.
    """
    from features.parallel import ordered_pool, pool_workers, thread_map

    t0 = time.perf_counter()
    tables = encoder_tables(wh, encoders)
    if not tables:
        raise ValueError("no embeddings table has rows: run the embeddings asset (astrovision embed) first")
    names = [encoder_of_table(t) or t for t in tables]
    quantities = _quantity_values(wh)
    qdef = {q.name: q for q in QUANTITIES}
    notes: list[str] = []
    rows: list[dict[str, Any]] = []
    meta: dict[str, dict[str, Any]] = {}
    rho_rows: list[dict[str, Any]] = []
    rho_jobs: list[tuple[np.ndarray, np.ndarray, int, int, int]] = []
    for enc in list(names):
        if wh.count(TABLE_PREFIX + enc) < PCA_MIN_VECTORS:
            notes.append(f"{enc}: fewer than {PCA_MIN_VECTORS} vectors, not analysed")
            names.remove(enc)
            continue
        ids, pcs, m = _pcs(wh, enc, n_pcs)
        meta[enc] = m
        pos = {g: i for i, g in enumerate(ids)}
        for qn, vals in quantities.items():
            common = [g for g in ids if g in vals]
            x = pcs[[pos[g] for g in common]]
            y = np.array([vals[g] for g in common])
            for j in range(pcs.shape[1]):
                rho_jobs.append((x[:, j].copy(), y, n_boot, n_perm, seed))
                rho_rows.append({"quantity": qn, "encoder": enc, "statistic": f"spearman_pc{j + 1}", **m})
    # cross-validated R^2 on the galaxies every feature set has
    vecs = {enc: _vectors(wh, TABLE_PREFIX + enc) for enc in names}
    shared = sorted(set.intersection(*(set(v.ids) for v in vecs.values()))) if vecs else []
    feats: dict[str, np.ndarray] = {}
    for enc, v in vecs.items():
        pos = {g: i for i, g in enumerate(v.ids)}
        feats[enc] = v.x[[pos[g] for g in shared]]
    if "random_vits14" not in names:
        notes.append("no random_vits14 embeddings: the random-encoder baseline is absent")
    if pixel_baseline and shared:
        feats[PIXELS] = _pixel_features(wh, shared)
    meta[PIXELS] = {"embeddings_version": None, "weights_origin": "none (pixels)", "weights_sha256": ""}
    gal = wh.read("galaxies", columns=["galaxy_id", "duplicate_group"]).to_pydict()
    group_of = {g: (d or g) for g, d in zip(gal["galaxy_id"], gal["duplicate_group"])}
    r2: dict[str, dict[str, tuple[float, float, float]]] = {}
    r2_jobs: dict[str, tuple] = {}
    for qn, vals in quantities.items():
        use = [i for i, g in enumerate(shared) if g in vals]
        groups = np.array([group_of.get(shared[i], shared[i]) for i in use])
        if len(set(groups)) < max(n_folds, 10):
            notes.append(f"{qn}: only {len(use)} galaxies with a value, no R^2")
            continue
        y = np.array([vals[shared[i]] for i in use])
        ref = PIXELS if PIXELS in feats else None
        r2_jobs[qn] = (feats, np.asarray(use, dtype=np.int64), y, groups, n_folds, n_boot, seed, ref)
    # the rho jobs run on each encoder's own vectors: the largest table decides, not the galaxies all
    # of them share (a sampled random_vits14 baseline makes that ~3,000 at any N)
    largest = max([len(shared), *(len(v.ids) for v in vecs.values())])
    procs = pool_workers(workers, largest)
    with ordered_pool(procs, preload=["models.representation"]) as pmap:
        if procs == 1 and workers is None:
            # below the pool's threshold the rho jobs still share the cores, as threads: numpy's sorts and
            # reductions release the GIL, so they cost no process start; BLAS one thread, as in a pool
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1):
                rhos = thread_map(_spearman_job, rho_jobs)
        else:
            rhos = pmap(_spearman_job, rho_jobs)
        estimates = dict(zip(r2_jobs, pmap(_r2_job, list(r2_jobs.values()))))
    for row, e in zip(rho_rows, rhos):
        rows.append({**row, "value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "p": e.p, "n": e.n})
    for qn, est in estimates.items():
        r2[qn] = {}
        for key, e in est.items():
            enc, stat = (key.split("-minus-")[0], "r2_cv_minus_pixels") if "-minus-" in key else (key, "r2_cv")
            rows.append({"quantity": qn, "encoder": enc, "statistic": stat, "value": e.value, "ci_low": e.ci_low,
                         "ci_high": e.ci_high, "p": e.p, "n": e.n, **meta[enc]})
            if stat == "r2_cv":
                r2[qn][enc] = (e.value, e.ci_low, e.ci_high)
    _add_qvalues(rows, qdef)
    table = pa.table({c: [r[c] for r in rows] for c in ("quantity", "encoder", "statistic", "value", "ci_low",
                                                        "ci_high", "p", "q", "n", "source", "subset",
                                                        "weights_origin", "weights_sha256",
                                                        "embeddings_version")})
    if rows:
        analysed = ", ".join(quote(e) for e in [*names, PIXELS])
        wh.replace("representation_analysis", table, where=f"encoder IN ({analysed})", run_id=run_id)
    figures = _analysis_figures(wh, rows, names, list(quantities), r2, meta)
    log(f"representation_analysis: {len(rows)} rows over {len(names)} encoder(s), {len(quantities)} quantities")
    return AnalysisOutcome(table, figures, notes, time.perf_counter() - t0)
