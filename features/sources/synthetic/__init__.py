"""The ``demo`` source: a synthetic Galaxy10 DECaLS-like survey with ground truth.

Galaxies of the ten Galaxy10 classes are built from physical components (:mod:`.params` for the class
ranges, :mod:`.render` for the light, :mod:`.observe` for PSF, noise, neighbours and the RGB stretch),
rendered deterministically per row (:mod:`.galaxy`), served as a :class:`~features.sources.base.Source`
(:mod:`.survey`), with an SDSS-like photometric catalogue (:mod:`.catalogue`) and a contact sheet
(:mod:`.sheet`).
"""

from __future__ import annotations

from features.sources.synthetic.catalogue import CATALOGUE_SCHEMA, catalogue_table, write_photometry_catalogue
from features.sources.synthetic.galaxy import TRUTH_SCHEMA, RenderedGalaxy, decode_mask, render_galaxy
from features.sources.synthetic.observe import DEFAULT_STRETCH, apply_stretch, invert_stretch
from features.sources.synthetic.params import CLASS_RANGES, COMMON_RANGES, GalaxyParams, draw_params
from features.sources.synthetic.sheet import contact_sheet
from features.sources.synthetic.survey import DEFAULT_N, SyntheticSurvey, class_counts

__all__ = [
    "CATALOGUE_SCHEMA",
    "CLASS_RANGES",
    "COMMON_RANGES",
    "DEFAULT_N",
    "DEFAULT_STRETCH",
    "TRUTH_SCHEMA",
    "GalaxyParams",
    "RenderedGalaxy",
    "SyntheticSurvey",
    "apply_stretch",
    "catalogue_table",
    "class_counts",
    "contact_sheet",
    "decode_mask",
    "draw_params",
    "invert_stretch",
    "render_galaxy",
    "write_photometry_catalogue",
]
