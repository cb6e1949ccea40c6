"""Non-parametric morphology of every galaxy with statmorph (Rodriguez-Gomez et al. 2019).

One galaxy and band at a time: turn the stored image into a flux (or documented proxy) plane
(:mod:`.inputs`), subtract the background and segment the central source (:mod:`.segmentation`), run
statmorph on it (:mod:`.measure`, with the numerically equivalent faster class of :mod:`.fast`), and
return a flat record with NaN plus flags for anything that could not be measured. :mod:`.batch` runs
many galaxies in worker processes under a per-galaxy time limit.

Example
-------
>>> from features.morphometrics import MorphInput, measure_batch
>>> records = measure_batch([MorphInput("demo:1", image, "rgb_composite", "z,r,g", 0.262)], bands=["r"])
... # doctest: +SKIP
"""

from features.morphometrics.batch import (
    MorphInput,
    check_bands,
    measure_batch,
    measure_one,
    records_to_table,
    summarise_warnings,
    tally_warnings,
)
from features.morphometrics.fast import FastSourceMorphology, morphology_class, rotate180
from features.morphometrics.inputs import LUMINANCE, METHODS, Plane, measurement_plane
from features.morphometrics.measure import (
    ARCSEC_RADII,
    QUANTITIES,
    SERSIC_QUANTITIES,
    MorphOptions,
    MorphTimeout,
    empty_record,
    measure_image,
    measure_plane,
    record_from_morphology,
    run_statmorph,
    statmorph_stamp,
    time_limit,
)
from features.morphometrics.segmentation import Segmentation, SegmentationOptions, segment_central

__all__ = [
    "ARCSEC_RADII",
    "LUMINANCE",
    "METHODS",
    "QUANTITIES",
    "SERSIC_QUANTITIES",
    "FastSourceMorphology",
    "MorphInput",
    "MorphOptions",
    "MorphTimeout",
    "Plane",
    "Segmentation",
    "SegmentationOptions",
    "check_bands",
    "empty_record",
    "measure_batch",
    "measure_image",
    "measure_one",
    "measure_plane",
    "measurement_plane",
    "morphology_class",
    "record_from_morphology",
    "records_to_table",
    "rotate180",
    "run_statmorph",
    "segment_central",
    "statmorph_stamp",
    "summarise_warnings",
    "tally_warnings",
    "time_limit",
]
