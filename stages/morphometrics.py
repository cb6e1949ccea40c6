"""The morphometrics stage: statmorph morphology of one shard's galaxies, per band (no Dagster).

:func:`measure_shard` reads the shard's galaxies and images through a :class:`~warehouse.Warehouse`,
calls :func:`features.morphometrics.measure_batch` (worker processes, per-galaxy time limit), upserts one
row per (galaxy, band) and returns a :class:`MorphometricsResult`: the ``morphometrics`` asset's metadata
and the figures its checks judge.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from features.errors import InputError
from features.flags import Flag, decode
from stages.progress import Progress
from stages.results import INTERNAL, StageResult
from warehouse import quote, schemas

if TYPE_CHECKING:
    from features.morphometrics import MorphInput
    from warehouse import Warehouse

# features.morphometrics imports statmorph, photutils, astropy and scipy (~100 MB): it is imported inside
# the functions below, so loading the Dagster definitions does not pay for it.

__all__ = ["FAILED_BITS", "SUMMARY_QUANTITIES", "MorphometricsResult", "measure_shard", "summarise"]

FAILED_BITS = (Flag.IMAGE_BLANK | Flag.MORPH_NO_CENTRAL_SOURCE | Flag.MORPH_TIMED_OUT | Flag.MORPH_FAILED)
"""A row with any of these bits has no measurement at all."""

SUMMARY_QUANTITIES = ("gini", "m20", "concentration", "asymmetry", "smoothness", "multimode", "intensity",
                      "deviation", "shape_asymmetry", "rpetro_circ_arcsec", "r50_arcsec", "sersic_n", "sn_per_pixel")


def _inputs(wh: Warehouse, ids: list[str], pxscale: list, meta: pa.Table, chunk: int) -> Iterator[MorphInput]:
    from features.morphometrics import MorphInput

    kinds = meta.column("image_kind").to_pylist()
    bands = meta.column("bands").to_pylist()
    stretches = meta.column("stretch_json").to_pylist()
    for start in range(0, len(ids), chunk):
        images = wh.read_images(ids[start : start + chunk])
        for k, image in enumerate(images):
            i = start + k
            yield MorphInput(ids[i], image, kinds[i], bands[i], pxscale[i],
                             json.loads(stretches[i]) if stretches[i] else None)


def _check_bands(ids: list[str], meta: pa.Table, wanted: list[str]) -> None:
    from features.morphometrics.inputs import LUMINANCE, parse_bands

    seen: dict[tuple[str, int], str] = {}
    for gid, b, c in zip(ids, meta.column("bands").to_pylist(), meta.column("channels").to_pylist()):
        seen.setdefault((b, c), gid)
    for (b, c), gid in seen.items():
        names = parse_bands(b, c)
        missing = [w for w in wanted if w != LUMINANCE and w not in names]
        if missing:
            raise InputError(f"images row {gid}: band(s) {missing} not in its bands {names}; "
                             f"configure bands from {names} or {LUMINANCE!r}")


def summarise(table: pa.Table) -> dict[str, dict[str, float]]:
    """Count of finite values, median and 5/95 percentiles of each summary quantity."""
    out = {}
    for q in SUMMARY_QUANTITIES:
        v = np.asarray(table.column(q).to_numpy(zero_copy_only=False), dtype=float)
        v = v[np.isfinite(v)]
        out[q] = ({"n": int(v.size), "p05": float(np.percentile(v, 5)), "median": float(np.median(v)),
                   "p95": float(np.percentile(v, 95))} if v.size else {"n": 0})
    return out


@dataclass(frozen=True)
class MorphometricsResult(StageResult):
    """What :func:`measure_shard` wrote for one shard (the ``morphometrics`` asset's metadata).

    The :data:`~stages.results.INTERNAL` fields are what the asset's checks judge: the fraction of rows
    without a measurement (:data:`FAILED_BITS`) and with statmorph flag >= 2, Gini outside [0, 1], M20 not
    negative, and quantities that are not finite where ``flags == 0`` (Sersic: where ``flag_sersic == 0``).
    """

    rows: int
    galaxies: int
    bands: str
    methods: dict[str, int]
    measured_with: str
    flag_counts: dict[str, int]
    rows_with_flags_0: int
    galaxies_per_second: float
    distributions: dict[str, dict[str, float]]
    median_runtime_s: float
    library_warnings: str = ""
    library_warning_counts: dict[str, int] = field(default_factory=dict)
    failed_rate: float = field(default=0.0, metadata=INTERNAL)
    statmorph_bad_rate: float = field(default=0.0, metadata=INTERNAL)
    gini_violations: int = field(default=0, metadata=INTERNAL)
    m20_violations: int = field(default=0, metadata=INTERNAL)
    nonfinite_values: int = field(default=0, metadata=INTERNAL)


def _column(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=float)


def measure_shard(wh: Warehouse, shard: str, *, bands: Sequence[str] = ("r",), fit_sersic: bool = True,
                  time_limit_s: float = 30.0, workers: int = 0, chunk_size: int = 256,
                  run_id: str | None = None, log: Callable[[str], None] | None = None) -> MorphometricsResult:
    """statmorph Gini, M20, CAS, MID, shape asymmetry and Sersic of every galaxy of ``shard``, per band.

    Parameters
    ----------
    wh : Warehouse
        Read ``galaxies`` and ``images``, upsert ``morphometrics``.
    shard : str
        The partition key.
    bands : sequence of str
        Bands as named in ``images.bands``, or ``"luminance"``.
    fit_sersic, time_limit_s : bool, float
        :class:`features.morphometrics.MorphOptions`.
    workers : int
        Worker processes: 0 one per core, 1 in this process.
    chunk_size : int
        Images read from the warehouse at a time.
    run_id : str, optional
        Stored with every row.
    log : callable, optional
        Receives the progress lines (galaxies done / total, rate, ETA; :class:`stages.progress.Progress`)
        and one summary of the library warnings caught per galaxy (counted, never streamed).

    Raises
    ------
    features.errors.InputError
        The shard has no galaxies, or a band is not among an image's bands (before anything is measured).
    """
    import statmorph

    from features.morphometrics import (
        MorphOptions,
        measure_batch,
        morphology_class,
        records_to_table,
        summarise_warnings,
        tally_warnings,
    )

    gal = wh.read("galaxies", columns=["galaxy_id", "pxscale"], where=f"shard = {quote(shard)}")
    if gal.num_rows == 0:
        raise InputError(f"shard {shard!r} has no galaxies; materialize `galaxies` first")
    gal = gal.sort_by("galaxy_id")
    ids = gal.column("galaxy_id").to_pylist()
    pxscale = gal.column("pxscale").to_pylist()
    meta = wh.take("images", ids, columns=["image_kind", "bands", "channels", "stretch_json"])
    _check_bands(ids, meta, list(bands))

    options = MorphOptions(fit_sersic=fit_sersic, time_limit_s=time_limit_s)
    t0 = time.perf_counter()
    with Progress(len(ids), f"morphometrics {shard}", log=log) as progress:
        records = measure_batch(_inputs(wh, ids, pxscale, meta, max(1, chunk_size)), bands=list(bands),
                                options=options, workers=None if workers <= 0 else workers,
                                progress=progress.update)
    elapsed = time.perf_counter() - t0
    caught = tally_warnings(records)  # counted here and said once, never streamed per galaxy
    warnings_line = summarise_warnings(caught, len(ids))
    if caught and log is not None:
        log(f"morphometrics {shard}: {warnings_line}")
    measured_with = f"statmorph {statmorph.__version__} ({morphology_class().__name__})"
    for r in records:
        r["shard"] = shard
        r["statmorph_version"] = measured_with
    table = records_to_table(records, schemas.get("morphometrics").columns)
    wh.upsert("morphometrics", table, run_id=run_id)
    return _result(table, len(ids), list(bands), measured_with, elapsed,
                   warnings=(warnings_line, dict(caught.most_common())))


def _result(table: pa.Table, n_galaxies: int, bands: list[str], measured_with: str,
            elapsed: float, warnings: tuple[str, dict[str, int]] = ("", {})) -> MorphometricsResult:
    """The stored rows summarised for the metadata, and the figures the asset's checks judge."""
    from features.morphometrics import QUANTITIES, SERSIC_QUANTITIES

    flags = np.asarray(table.column("flags").to_numpy(zero_copy_only=False), dtype=np.int64)
    counts: dict[str, int] = {}
    for f in flags.tolist():
        for name in decode(f):
            counts[name] = counts.get(name, 0) + 1
    methods = dict(zip(*np.unique(table.column("method").to_pylist(), return_counts=True)))
    runtime = _column(table, "runtime_s")
    runtime = runtime[np.isfinite(runtime)]
    n = max(table.num_rows, 1)
    smf, fsr, gini, m20 = (_column(table, c) for c in ("statmorph_flag", "flag_sersic", "gini", "m20"))
    clean = flags == 0
    nonfinite = 0
    for q in QUANTITIES:
        rows = clean & (fsr == 0) if q in SERSIC_QUANTITIES else clean
        nonfinite += int((rows & ~np.isfinite(_column(table, q))).sum())
    return MorphometricsResult(
        rows=table.num_rows,
        galaxies=n_galaxies,
        bands=", ".join(bands),
        methods={str(k): int(v) for k, v in methods.items()},
        measured_with=measured_with,
        flag_counts=counts,
        rows_with_flags_0=int(clean.sum()),
        galaxies_per_second=n_galaxies / max(elapsed, 1e-9),
        distributions=summarise(table),
        median_runtime_s=float(np.median(runtime)) if runtime.size else 0.0,
        library_warnings=warnings[0],
        library_warning_counts=warnings[1],
        failed_rate=float(((flags & int(FAILED_BITS)) > 0).sum() / n),
        statmorph_bad_rate=float((np.nan_to_num(smf, nan=0) >= 2).sum() / n),
        gini_violations=int((np.isfinite(gini) & ~((gini >= 0) & (gini <= 1))).sum()),
        m20_violations=int((np.isfinite(m20) & ~(m20 < 0)).sum()),
        nonfinite_values=nonfinite,
    )
