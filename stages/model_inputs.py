"""What the trained models read from the warehouse: stored embeddings (the probe) and the fusion's modalities.

Moved from ``models/`` (issue 22 step 2): ``models`` keeps array functions and takes no warehouse; the
reading of their inputs is glue. ``read_modalities`` returns a :class:`models.fusion_data.Modalities`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.errors import MissingInputError
from models.fusion_data import (
    BANDS,
    LOG_COLUMNS,
    MODALITIES,
    MORPH_COLUMNS,
    PHOT_COLUMNS,
    Modalities,
    check_frozen_encoder,
)
from warehouse import Warehouse
from warehouse.schemas.embeddings import embedding_table

__all__ = ["read_embeddings", "read_modalities"]


def read_embeddings(
    wh: Warehouse,
    table: str,
    galaxy_ids: Sequence[str],
    columns: Sequence[str] = ("vector", "patch_mean"),
) -> np.ndarray:
    """Stored embeddings of ``galaxy_ids`` as one ``(N, D)`` float32 array (columns concatenated).

    Parameters
    ----------
    wh : warehouse.Warehouse
    table : str
        An embeddings table, e.g. ``embeddings_dinov2_vits14``.
    galaxy_ids : sequence of str
    columns : sequence of str
        Vector columns to concatenate; default the CLS token and the patch-token mean.

    Raises
    ------
    MissingInputError
        When the table does not exist or lacks some of the galaxies (the message names both).
    """
    if not wh.exists(table):
        raise MissingInputError(
            f"embeddings table {table!r} does not exist in {wh.root}; materialize the "
            f"{table} asset (or run `astrovision embed`) first"
        )
    try:
        rows = wh.take(table, list(galaxy_ids), columns=list(columns))
    except ValueError as exc:  # WarehouseError: missing ids or columns
        raise MissingInputError(f"cannot read {list(columns)} of {len(galaxy_ids)} galaxies from {table!r}: {exc}") from None
    parts = []
    for c in columns:
        col = rows.column(c).combine_chunks()
        if col.null_count:
            raise MissingInputError(f"{table}.{c}: {col.null_count} galaxies have no vector")
        flat = np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
        parts.append(flat.reshape(len(rows), -1))
    return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


def _embeddings(wh: Warehouse, table: str, ids: list[str]) -> tuple[np.ndarray, np.ndarray, str]:
    n = len(ids)
    if not wh.exists(table):
        return np.full((n, 0), np.nan), np.zeros(n, bool), f"table {table} does not exist"
    have = set(wh.read(table, columns=["galaxy_id"]).column("galaxy_id").to_pylist())
    present = np.array([g in have for g in ids], dtype=bool)
    if not present.any():
        return np.full((n, 0), np.nan), present, f"no galaxy has a row in {table}"
    rows = [g for g in ids if g in have]
    vec = read_embeddings(wh, table, rows).astype(np.float64)
    x = np.full((n, vec.shape[1]), np.nan)
    x[present] = vec
    return x, present, ""


def _features(wh: Warehouse, ids: list[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, str]]:
    cols = ", ".join(MORPH_COLUMNS)
    dered = ", ".join(f"nan_null(p.modelMag_{b} - p.extinction_{b}) AS mag_{b}_dered" for b in BANDS)
    frame = wh.sql(
        f"SELECT f.galaxy_id, f.morph_ok, {cols}, coalesce(p.quality_ok, false) AS phot_ok, {dered}, "
        "f.u_g, f.g_r, f.r_i, f.i_z, p.galaxy_id IS NOT NULL AS phot_row, f.morph_band IS NOT NULL AS morph_row "
        "FROM galaxy_features f LEFT JOIN photometry p USING (galaxy_id)", limit=None)
    index = {g: i for i, g in enumerate(frame["galaxy_id"].to_list())}
    rows = np.array([index.get(g, -1) for g in ids], dtype=np.int64)
    found = rows >= 0
    x: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    notes: dict[str, str] = {}
    for m, columns, ok, row in (("morphometrics", MORPH_COLUMNS, "morph_ok", "morph_row"),
                                ("photometry", PHOT_COLUMNS, "phot_ok", "phot_row")):
        vals = frame.select(list(columns)).cast({c: float for c in columns}).fill_null(np.nan).to_numpy()
        vals = np.where(found[:, None], vals[np.where(found, rows, 0)], np.nan).astype(np.float64)
        for j, c in enumerate(columns):
            if c in LOG_COLUMNS:
                with np.errstate(divide="ignore", invalid="ignore"):
                    vals[:, j] = np.where(vals[:, j] > 0, np.log10(vals[:, j]), np.nan)
        okv = frame[ok].fill_null(False).to_numpy()
        present[m] = found & okv[np.where(found, rows, 0)]
        x[m] = vals
        if not present[m].any():
            has_row = frame[row].to_numpy()[np.where(found, rows, 0)] & found
            what = "morph_ok" if m == "morphometrics" else "quality_ok"
            notes[m] = (f"no {m} row for any galaxy" if not has_row.any() else
                        f"{int(has_row.sum())} galaxies have a {m} row but none passes {what}")
    return x, present, notes


def read_modalities(wh: Warehouse, galaxy_ids: Sequence[str], encoder: str) -> Modalities:
    """The three modalities of ``galaxy_ids`` (in order) from ``wh``; absent ones NaN with ``present`` False.

    Raises
    ------
    MissingInputError
        A refused encoder (:func:`check_frozen_encoder`) or no ``galaxies`` table.
    """
    check_frozen_encoder(encoder)
    if not wh.exists("galaxies"):
        raise MissingInputError(f"table 'galaxies' does not exist in {wh.root}")
    ids = list(galaxy_ids)
    table = embedding_table(encoder)
    emb, emb_present, emb_note = _embeddings(wh, table, ids)
    x, present, notes = _features(wh, ids)
    x["embeddings"], present["embeddings"] = emb, emb_present
    if emb_note:
        notes["embeddings"] = emb_note
    columns = {"embeddings": [f"{table}[{j}]" for j in range(emb.shape[1])],
               "morphometrics": list(MORPH_COLUMNS), "photometry": list(PHOT_COLUMNS)}
    return Modalities(ids, {m: x[m] for m in MODALITIES}, {m: present[m] for m in MODALITIES}, columns, notes)
