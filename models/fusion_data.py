"""The three input modalities of the late-fusion classifier, read from a warehouse it is handed.

* ``embeddings``: the CLS vector and patch-token mean of one *frozen* encoder's stored table
  ``embeddings_<encoder>`` (never a backbone fine-tuned on labels: only stored embedding tables are read,
  and the classifiers of :data:`models.registry.MODELS` are refused as encoders). Present where the table
  has a row.
* ``morphometrics``: the physically meaningful statmorph quantities of the ``galaxy_features`` view
  (:data:`MORPH_COLUMNS`; radii in arcsec and the Sersic index as ``log10``). Present where ``morph_ok``
  (measured, none of :data:`features.flags.MORPH_UNTRUSTED`); a NaN value of a present row (e.g. the Sersic
  values under ``MORPH_SERSIC_FAILED``) is imputed and gets its own missing indicator downstream.
* ``photometry``: extinction-corrected model magnitudes ``modelMag_b - extinction_b`` (ugriz) and the
  extinction-corrected colours of the ``photometry`` table. Present where ``quality_ok`` (matched, clean,
  a galaxy, errors within the limits: :mod:`features.photometry.quality`).

A modality absent for a galaxy is all NaN in :attr:`Modalities.x` and ``False`` in
:attr:`Modalities.present`; :mod:`models.fusion` imputes it and the prediction rows carry
``Flag.MODALITY_MISSING``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.errors import MissingInputError

__all__ = ["LOG_COLUMNS", "MODALITIES", "MORPH_COLUMNS", "PHOT_COLUMNS", "Modalities", "check_frozen_encoder",
           "read_modalities"]

MODALITIES: tuple[str, ...] = ("embeddings", "morphometrics", "photometry")
"""The modalities, in the order of the fused input."""

MORPH_COLUMNS: tuple[str, ...] = (
    "gini", "m20", "gini_m20_bulge", "gini_m20_merger", "concentration", "asymmetry", "smoothness",
    "multimode", "intensity", "deviation", "outer_asymmetry", "shape_asymmetry",
    "r20_arcsec", "r50_arcsec", "r80_arcsec", "rpetro_circ_arcsec", "ellipticity", "elongation",
    "sersic_n", "sersic_rhalf_arcsec",
)
"""Columns of ``galaxy_features`` used (positions, fluxes and the sky noise are left out: not morphology)."""

LOG_COLUMNS: frozenset[str] = frozenset({"r20_arcsec", "r50_arcsec", "r80_arcsec", "rpetro_circ_arcsec",
                                         "sersic_n", "sersic_rhalf_arcsec", "elongation"})
"""Positive, heavy-tailed columns taken as ``log10`` (non-positive values become NaN)."""

_BANDS = ("u", "g", "r", "i", "z")
PHOT_COLUMNS: tuple[str, ...] = (*(f"mag_{b}_dered" for b in _BANDS), "u_g", "g_r", "r_i", "i_z")
"""Extinction-corrected magnitudes, then the (extinction-corrected) colours of ``photometry``."""


@dataclass
class Modalities:
    """Features of some galaxies, per modality: ``x[m]`` ``(N, D_m)`` float64 with NaN, ``present[m]`` ``(N,)``.

    ``notes`` says per modality why it is absent where it is (e.g. no table, not one galaxy present).
    """

    galaxy_ids: list[str]
    x: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    columns: dict[str, list[str]]
    notes: dict[str, str] = field(default_factory=dict)

    def subset(self, index: np.ndarray | Sequence[int]) -> Modalities:
        """The rows ``index``."""
        idx = np.asarray(index, dtype=np.int64)
        return Modalities([self.galaxy_ids[i] for i in idx], {m: v[idx] for m, v in self.x.items()},
                          {m: v[idx] for m, v in self.present.items()}, self.columns, dict(self.notes))

    def missing(self) -> list[list[str]]:
        """Per galaxy, the modalities it lacks."""
        return [[m for m in MODALITIES if not self.present[m][i]] for i in range(len(self.galaxy_ids))]


def check_frozen_encoder(encoder: str) -> None:
    """Refuse an encoder name that is a trained classifier (its features saw labels, maybe of val or test).

    Raises
    ------
    MissingInputError
        ``encoder`` names a model of :data:`models.registry.MODELS` (e.g. ``dinov2_finetune``), or is empty.
    """
    from models.registry import MODELS

    if not encoder or encoder in MODELS:
        raise MissingInputError(
            f"fusion encoder {encoder!r} refused: fusion reads only the stored embeddings of a frozen encoder "
            "(embeddings_<encoder>, e.g. dinov2_vits14), never the features of a classifier fine-tuned on a split "
            "that includes val or test")


def _embeddings(wh: Any, table: str, ids: list[str]) -> tuple[np.ndarray, np.ndarray, str]:
    from models.data import read_embeddings

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


def _features(wh: Any, ids: list[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, str]]:
    cols = ", ".join(MORPH_COLUMNS)
    dered = ", ".join(f"nan_null(p.modelMag_{b} - p.extinction_{b}) AS mag_{b}_dered" for b in _BANDS)
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


def read_modalities(wh: Any, galaxy_ids: Sequence[str], encoder: str) -> Modalities:
    """The three modalities of ``galaxy_ids`` (in order) from ``wh``; absent ones NaN with ``present`` False.

    Raises
    ------
    MissingInputError
        A refused encoder (:func:`check_frozen_encoder`) or no ``galaxies`` table.
    """
    from models.data import embeddings_table

    check_frozen_encoder(encoder)
    if not wh.exists("galaxies"):
        raise MissingInputError(f"table 'galaxies' does not exist in {wh.root}")
    ids = list(galaxy_ids)
    table = embeddings_table(encoder)
    emb, emb_present, emb_note = _embeddings(wh, table, ids)
    x, present, notes = _features(wh, ids)
    x["embeddings"], present["embeddings"] = emb, emb_present
    if emb_note:
        notes["embeddings"] = emb_note
    columns = {"embeddings": [f"{table}[{j}]" for j in range(emb.shape[1])],
               "morphometrics": list(MORPH_COLUMNS), "photometry": list(PHOT_COLUMNS)}
    return Modalities(ids, {m: x[m] for m in MODALITIES}, {m: present[m] for m in MODALITIES}, columns, notes)
