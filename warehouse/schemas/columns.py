"""One column-metadata registry: unit, UCD and description of every column users see.

Every column of every registered table (provenance columns included) and of every SQL view in
``sql/*.sql`` is documented here once, beside the schemas, and read by the Virtual Observatory
answers (VOTable ``FIELD`` attributes, TAP ``tables``), the exports (FITS ``TUNITn`` / ``TCOMMn``,
Parquet field metadata) and the API docs.

* Units are VOUnit strings (astropy parses them with ``format="vounit"``); ``None``: dimensionless
  or not a quantity.
* UCDs are UCD1+ words (``pos.eq.ra;meta.main``); ``None`` where no word fits.
* A column named the same in several relations means the same thing unless a relation overrides it
  (:data:`warehouse.schemas.table_docs.COMMON`, then the relation's own entries). The tables' entries
  live in :mod:`warehouse.schemas.table_docs`, the views' here.

``tests/test_columns.py`` fails for any table or view column without a description here.
"""

from __future__ import annotations

from warehouse import schemas
from warehouse.schemas.table_docs import (
    ANOMALY_SCORES,
    COMMON,
    EMBEDDINGS,
    GALAXIES,
    LABELS,
    MASK_FEATURES,
    MASKS,
    MORPHOMETRICS,
    PHOTOMETRY,
    PREDICTIONS,
    TABLES,
    ColumnDoc,
    doc,
)

__all__ = ["VIEW_COLUMNS", "ColumnDoc", "column_docs", "documented_relations", "find_doc", "undocumented"]


# --- views (sql/*.sql): their columns in order, and what differs from the tables they read ---------------

_MORPH_BANDS = {"r": "r band", "g": "g band", "z": "z band", "luminance": "luminance proxy of an RGB image"}


def _morphology_view() -> dict[str, ColumnDoc]:
    docs = {"galaxy_id": COMMON["galaxy_id"], "shard": COMMON["shard"],
            "image_kind": COMMON["image_kind"],
            "method_r": doc("statmorph recipe of the r-band row", "meta.code")}
    per_band = {"r": ("gini", "m20", "concentration", "asymmetry", "smoothness", "sersic_n", "r50_arcsec"),
                "g": ("gini", "concentration", "asymmetry"), "z": ("gini", "concentration", "asymmetry"),
                "luminance": ("gini", "m20", "concentration", "asymmetry")}
    for band, quantities in per_band.items():
        for q in quantities:
            base = MORPHOMETRICS[q]
            docs[f"{q}_{band}"] = ColumnDoc(base.unit, base.ucd, f"{base.description}, {_MORPH_BANDS[band]}")
        docs[f"flags_{band}"] = ColumnDoc(None, "meta.code.qual",
                                          f"morphometrics flags, {_MORPH_BANDS[band]}")
    docs["bands_measured"] = doc("number of bands measured", "meta.number")
    return docs


def _galaxy_features_view() -> dict[str, ColumnDoc]:
    docs = {c: COMMON[c] for c in ("galaxy_id", "source", "native_id", "shard", "ra", "dec", "redshift",
                                    "pxscale", "label", "label_name", "duplicate_group")}
    docs["image_flags"] = ColumnDoc(None, "meta.code.qual", GALAXIES["flags"].description)
    docs["morph_band"] = doc("band of the morphometrics shown (r, else luminance, else the first measured)",
                            "instr.bandpass")
    docs["morph_method"] = doc("statmorph recipe of the morphometrics shown", "meta.code")
    for q in ("gini", "m20", "gini_m20_bulge", "gini_m20_merger", "concentration", "asymmetry", "smoothness",
              "multimode", "intensity", "deviation", "outer_asymmetry", "shape_asymmetry", "r20_arcsec",
              "r50_arcsec", "r80_arcsec", "rpetro_circ_arcsec", "ellipticity", "elongation", "sersic_n",
              "sersic_rhalf_arcsec", "sn_per_pixel"):
        docs[q] = MORPHOMETRICS[q]
    docs["morph_flags"] = ColumnDoc(None, "meta.code.qual", MORPHOMETRICS["flags"].description)
    docs["morph_ok"] = doc("morphometrics measured and trusted (no MORPH_UNTRUSTED flag bit)", "meta.code.qual")
    for b in ("g", "r", "z"):
        docs[f"mag_{b}"] = PHOTOMETRY[f"modelMag_{b}"]
    for c in ("u_g", "g_r", "r_i", "i_z", "u_r"):
        docs[c] = PHOTOMETRY[c]
    docs["petro_r50_r"] = PHOTOMETRY["petroR50_r"]
    docs["petro_r90_r"] = PHOTOMETRY["petroR90_r"]
    docs["frac_dev_r"] = PHOTOMETRY["fracDeV_r"]
    docs["specz"] = PHOTOMETRY["specz"]
    docs["match_sep_arcsec"] = PHOTOMETRY["sep_arcsec"]
    docs["phot_quality_ok"] = PHOTOMETRY["quality_ok"]
    docs["phot_flags"] = ColumnDoc(None, "meta.code.qual", PHOTOMETRY["flags"].description)
    return docs


def _galaxy_images_view() -> dict[str, ColumnDoc]:
    names = ("galaxy_id", "source", "native_id", "shard", "ra", "dec", "redshift", "pxscale", "label",
             "label_name", "duplicate_group", "flags", "height", "width", "channels", "dtype", "bands",
             "image_kind", "encoding", "image_bytes")
    return {c: GALAXIES.get(c, COMMON[c]) for c in names}


def _latest_predictions_view() -> dict[str, ColumnDoc]:
    docs = {c: PREDICTIONS.get(c, COMMON.get(c)) for c in ("galaxy_id", "model_name", "model_version",
                                                                "predicted_label", "predicted_name")}
    docs["confidence"] = doc("largest class probability", "stat.probability")
    docs["probabilities"] = PREDICTIONS["probabilities"]
    docs["split"] = COMMON["split"]
    docs["label"] = COMMON["label"]
    docs["label_name"] = COMMON["label_name"]
    docs["correct"] = doc("the predicted class is the catalogue label", "meta.code.qual")
    return docs  # type: ignore[return-value]


def _galaxy_masks_view() -> dict[str, ColumnDoc]:
    docs = {"galaxy_id": COMMON["galaxy_id"], "label_name": COMMON["label_name"],
            "model_name": MASKS["model_name"], "model_version": MASKS["model_version"],
            "gate_passed": doc("the segmentation model beat Otsu against the demo's true masks", "meta.code.qual"),
            "split": MASKS["split"], "area_px": MASKS["area_px"]}
    for c in ("area_arcsec2", "centroid_x_px", "centroid_y_px", "ellipticity", "bulge_fraction", "covers_centre",
              "iou_otsu", "iou_truth", "dice_truth", "otsu_iou_truth", "otsu_dice_truth"):
        docs[c] = MASK_FEATURES[c]
    docs["mask_flags"] = ColumnDoc(None, "meta.code.qual", MASKS["flags"].description)
    return docs


def _uncertain_galaxies_view() -> dict[str, ColumnDoc]:
    docs = {"galaxy_id": COMMON["galaxy_id"], "image_sha1": COMMON["image_sha1"],
            "model_name": COMMON["model_name"], "model_version": COMMON["model_version"],
            "split": COMMON["split"], "predicted_name": PREDICTIONS["predicted_name"]}
    for c in ("conformal_set", "conformal_set_size", "marginal_set", "temperature"):
        docs[c] = PREDICTIONS[c]
    docs["calibrated_confidence"] = doc("largest calibrated class probability", "stat.probability")
    docs["predictive_entropy"] = PREDICTIONS["predictive_entropy"]
    docs["mutual_information"] = PREDICTIONS["mutual_information"]
    docs["high_mutual_information"] = doc("mutual information in the top decile of the model version's galaxies",
                                         "meta.code.qual")
    docs["label_name"] = COMMON["label_name"]
    return docs


def _anomalies_view() -> dict[str, ColumnDoc]:
    docs = {"galaxy_id": COMMON["galaxy_id"], "encoder": COMMON["encoder"], "method": ANOMALY_SCORES["method"],
            "anomaly_score": ANOMALY_SCORES["score"], "anomaly_rank": ANOMALY_SCORES["rank"],
            "embeddings_version": ANOMALY_SCORES["embeddings_version"]}
    docs.update({c: doc for c, doc in _galaxy_features_view().items() if c != "galaxy_id"})
    return docs


def _latest_labels_view() -> dict[str, ColumnDoc]:
    return {c: LABELS.get(c) or COMMON[c]
            for c in ("galaxy_id", "name", "value", "who", "labelled_at", "source", "label_id")}


_VIEWS: dict[str, dict[str, ColumnDoc]] = {
    "galaxy_images": _galaxy_images_view(),
    "morphology": _morphology_view(),
    "galaxy_features": _galaxy_features_view(),
    "latest_predictions": _latest_predictions_view(),
    "galaxy_masks": _galaxy_masks_view(),
    "uncertain_galaxies": _uncertain_galaxies_view(),
    "anomalies": _anomalies_view(),
    "latest_labels": _latest_labels_view(),
}

VIEW_COLUMNS: dict[str, tuple[str, ...]] = {name: tuple(docs) for name, docs in _VIEWS.items()}
"""The columns of each documented view, in the view's order (a test keeps them equal to ``sql/*.sql``)."""

_UNDOCUMENTED = ColumnDoc(None, None, "")


def _table_docs(name: str) -> dict[str, ColumnDoc]:
    own = TABLES.get(name, {})
    if name.startswith("embeddings_"):
        own = EMBEDDINGS
    return {f.name: own.get(f.name) or COMMON.get(f.name) or _UNDOCUMENTED for f in schemas.get(name).schema}


def column_docs(table_or_view: str) -> dict[str, ColumnDoc]:
    """Unit, UCD and description of every column of a registered table or a view, in column order.

    Parameters
    ----------
    table_or_view : str
        A table of :func:`warehouse.schemas.registered` (provenance columns included) or a view of
        ``sql/*.sql``.

    Returns
    -------
    dict of str to ColumnDoc
        One entry per column; a column nobody documented has an empty description (a test forbids it).

    Raises
    ------
    KeyError
        Neither a registered table nor a documented view (the message names the known ones).
    """
    if table_or_view in _VIEWS:
        return dict(_VIEWS[table_or_view])
    if table_or_view in schemas.registered():
        return _table_docs(table_or_view)
    known = sorted(set(schemas.registered()) | set(_VIEWS))
    raise KeyError(f"no table or view {table_or_view!r} is documented; known: {', '.join(known)}")


def documented_relations() -> list[str]:
    """Every table and view :func:`column_docs` answers for, sorted."""
    return sorted(set(schemas.registered()) | set(_VIEWS))


def find_doc(column: str, relations: tuple[str, ...] | list[str] = ()) -> ColumnDoc | None:
    """The doc of a result column by name: from the first of ``relations`` that has it, else a common one.

    For the columns of a query's result (``SELECT gini, ra FROM galaxy_features``), where only the
    names are known; ``None`` when nothing matches (a computed column).
    """
    for rel in relations:
        try:
            doc = column_docs(rel).get(column)
        except KeyError:
            continue
        if doc is not None and doc.description:
            return doc
    return COMMON.get(column)


def undocumented() -> dict[str, list[str]]:
    """Relation -> its columns without a description (empty when the registry covers every column)."""
    out: dict[str, list[str]] = {}
    for rel in documented_relations():
        missing = [c for c, doc in column_docs(rel).items() if not doc.description]
        if missing:
            out[rel] = missing
    return out
