"""The three input modalities of the late-fusion classifier.

:func:`stages.model_inputs.read_modalities` reads them from a warehouse; this module takes none.

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

import numpy as np

from models.errors import MissingInputError

__all__ = ["BANDS", "LOG_COLUMNS", "MODALITIES", "MORPH_COLUMNS", "PHOT_COLUMNS", "Modalities",
           "check_frozen_encoder"]

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

BANDS = ("u", "g", "r", "i", "z")
PHOT_COLUMNS: tuple[str, ...] = (*(f"mag_{b}_dered" for b in BANDS), "u_g", "g_r", "r_i", "i_z")
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
