"""The ``morphometrics`` asset: per shard, statmorph morphology of every galaxy in the configured bands.

Thin by design: read the shard's galaxies and images through the warehouse resource, call
:func:`features.morphometrics.measure_batch` (worker processes, per-galaxy time limit), upsert one row
per (galaxy, band), and report checks with their thresholds and the distribution of each quantity.
"""

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np
import pyarrow as pa
from pydantic import Field

from dagster_project.partitions import SHARDS
from dagster_project.resources import WarehouseResource
from features.errors import InputError
from features.flags import Flag, decode
from warehouse import Warehouse, quote, schemas

if TYPE_CHECKING:
    from features.morphometrics import MorphInput

# features.morphometrics imports statmorph, photutils, astropy and scipy (~100 MB): it is imported inside
# the functions below, so loading the Dagster definitions does not pay for it.

__all__ = ["MorphometricsConfig", "check_results", "defs", "morphometrics", "summarise"]

FAILED_BITS = (Flag.IMAGE_BLANK | Flag.MORPH_NO_CENTRAL_SOURCE | Flag.MORPH_TIMED_OUT | Flag.MORPH_FAILED)
"""A row with any of these bits has no measurement at all."""

SUMMARY_QUANTITIES = ("gini", "m20", "concentration", "asymmetry", "smoothness", "multimode", "intensity",
                      "deviation", "shape_asymmetry", "rpetro_circ_arcsec", "r50_arcsec", "sersic_n", "sn_per_pixel")


class MorphometricsConfig(dg.Config):
    """Run configuration of the ``morphometrics`` asset (every field has a default)."""

    bands: list[str] = Field(default=["r"], description='bands to measure, as named in images.bands, or "luminance"')
    fit_sersic: bool = Field(default=True, description="fit the single Sersic profile (~30% of the time)")
    time_limit_s: float = Field(default=30.0, description="per galaxy and band; beyond it NaN + MORPH_TIMED_OUT")
    workers: int = Field(default=0, description="worker processes: 0 one per core, 1 in the step's own process")
    chunk_size: int = Field(default=256, description="images read from the warehouse at a time")
    max_failed_rate: float = Field(default=0.10, description="check: largest fraction of rows with no measurement")
    max_bad_rate: float = Field(default=0.50, description="check: largest fraction with statmorph flag >= 2")


def _inputs(wh: Warehouse, ids: list[str], pxscale: list, meta: pa.Table, chunk: int) -> Iterator["MorphInput"]:
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


def check_results(table: pa.Table, max_failed_rate: float, max_bad_rate: float) -> list[dg.AssetCheckResult]:
    """The asset's four checks, thresholds in their metadata."""
    from features.morphometrics import QUANTITIES, SERSIC_QUANTITIES

    n = max(table.num_rows, 1)
    flags = np.asarray(table.column("flags").to_numpy(zero_copy_only=False), dtype=np.int64)
    smf = np.asarray(table.column("statmorph_flag").to_numpy(zero_copy_only=False), dtype=float)
    fsr = np.asarray(table.column("flag_sersic").to_numpy(zero_copy_only=False), dtype=float)
    failed = (flags & int(FAILED_BITS)) > 0
    bad = np.nan_to_num(smf, nan=0) >= 2
    gini = np.asarray(table.column("gini").to_numpy(zero_copy_only=False), dtype=float)
    m20 = np.asarray(table.column("m20").to_numpy(zero_copy_only=False), dtype=float)
    g_ok = ~np.isfinite(gini) | ((gini >= 0) & (gini <= 1))
    m_ok = ~np.isfinite(m20) | (m20 < 0)
    clean = flags == 0
    nonfinite = 0
    for q in QUANTITIES:
        v = np.asarray(table.column(q).to_numpy(zero_copy_only=False), dtype=float)
        rows = clean & (fsr == 0) if q in SERSIC_QUANTITIES else clean
        nonfinite += int((rows & ~np.isfinite(v)).sum())
    return [
        dg.AssetCheckResult(
            check_name="flag_rate", asset_key="morphometrics",
            passed=bool(failed.mean() <= max_failed_rate and bad.mean() <= max_bad_rate) if table.num_rows else True,
            metadata={"failed_rate": float(failed.sum() / n), "max_failed_rate": max_failed_rate,
                      "statmorph_bad_rate": float(bad.sum() / n), "max_bad_rate": max_bad_rate,
                      "failed_bits": ", ".join(decode(int(FAILED_BITS)))}),
        dg.AssetCheckResult(check_name="gini_in_unit_interval", asset_key="morphometrics", passed=bool(g_ok.all()),
                            metadata={"violations": int((~g_ok).sum()), "range": "0 <= gini <= 1"}),
        dg.AssetCheckResult(check_name="m20_negative", asset_key="morphometrics", passed=bool(m_ok.all()),
                            metadata={"violations": int((~m_ok).sum()), "range": "m20 < 0"}),
        dg.AssetCheckResult(check_name="finite_when_unflagged", asset_key="morphometrics", passed=nonfinite == 0,
                            metadata={"nonfinite_values": nonfinite, "threshold": 0,
                                      "rows_with_flags_0": int(clean.sum())}),
    ]


@dg.asset(
    partitions_def=SHARDS,
    deps=["galaxies"],
    group_name="features",
    kinds={"lance"},
    check_specs=[
        dg.AssetCheckSpec("flag_rate", asset="morphometrics",
                          description="few rows without a measurement or with statmorph flag >= 2"),
        dg.AssetCheckSpec("gini_in_unit_interval", asset="morphometrics", description="0 <= gini <= 1"),
        dg.AssetCheckSpec("m20_negative", asset="morphometrics", description="m20 < 0"),
        dg.AssetCheckSpec("finite_when_unflagged", asset="morphometrics",
                          description="every quantity is finite where flags == 0 (Sersic: where flag_sersic == 0)"),
    ],
)
def morphometrics(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                  config: MorphometricsConfig) -> dg.MaterializeResult:
    """statmorph Gini, M20, CAS, MID, shape asymmetry and Sersic of every galaxy of the shard, per band."""
    import statmorph

    from features.morphometrics import (
        MorphOptions,
        measure_batch,
        morphology_class,
        records_to_table,
        summarise_warnings,
        tally_warnings,
    )
    from stages.progress import Progress

    wh = warehouse.open()
    shard = context.partition_key
    gal = wh.read("galaxies", columns=["galaxy_id", "pxscale"], where=f"shard = {quote(shard)}")
    if gal.num_rows == 0:
        raise InputError(f"shard {shard!r} has no galaxies; materialize `galaxies` first")
    gal = gal.sort_by("galaxy_id")
    ids = gal.column("galaxy_id").to_pylist()
    pxscale = gal.column("pxscale").to_pylist()
    meta = wh.take("images", ids, columns=["image_kind", "bands", "channels", "stretch_json"])
    _check_bands(ids, meta, list(config.bands))

    options = MorphOptions(fit_sersic=config.fit_sersic, time_limit_s=config.time_limit_s)
    t0 = time.perf_counter()
    with Progress(len(ids), f"morphometrics {shard}", log=context.log.info) as progress:
        records = measure_batch(_inputs(wh, ids, pxscale, meta, max(1, config.chunk_size)), bands=config.bands,
                                options=options, workers=None if config.workers <= 0 else config.workers,
                                progress=progress.update)
    elapsed = time.perf_counter() - t0
    caught = tally_warnings(records)  # counted here and said once, never streamed per galaxy
    warnings_line = summarise_warnings(caught, len(ids))
    if caught:
        context.log.warning(f"morphometrics {shard}: {warnings_line}")
    measured_with = f"statmorph {statmorph.__version__} ({morphology_class().__name__})"
    for r in records:
        r["shard"] = shard
        r["statmorph_version"] = measured_with
    table = records_to_table(records, schemas.get("morphometrics").columns)
    wh.upsert("morphometrics", table, run_id=context.run_id)

    flags = table.column("flags").to_pylist()
    counts: dict[str, int] = {}
    for f in flags:
        for name in decode(f):
            counts[name] = counts.get(name, 0) + 1
    methods = dict(zip(*np.unique(table.column("method").to_pylist(), return_counts=True)))
    runtime = np.asarray(table.column("runtime_s").to_numpy(zero_copy_only=False), dtype=float)
    runtime = runtime[np.isfinite(runtime)]
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(table.num_rows),
            "galaxies": dg.MetadataValue.int(len(ids)),
            "bands": ", ".join(config.bands),
            "methods": dg.MetadataValue.json({str(k): int(v) for k, v in methods.items()}),
            "measured_with": measured_with,
            "flag_counts": dg.MetadataValue.json(counts),
            "rows_with_flags_0": dg.MetadataValue.int(sum(1 for f in flags if f == 0)),
            "galaxies_per_second": dg.MetadataValue.float(len(ids) / max(elapsed, 1e-9)),
            "distributions": dg.MetadataValue.json(summarise(table)),
            "median_runtime_s": dg.MetadataValue.float(float(np.median(runtime)) if runtime.size else 0.0),
            "library_warnings": warnings_line,
            "library_warning_counts": dg.MetadataValue.json(dict(caught.most_common())),
        },
        check_results=check_results(table, config.max_failed_rate, config.max_bad_rate),
    )


defs = dg.Definitions(assets=[morphometrics])
