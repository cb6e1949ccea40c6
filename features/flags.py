"""The project's single flag registry.

Every stage that can fail for one galaxy without stopping a batch records *why* in an integer bit field
built from :class:`Flag`. A value of 0 means "nothing to report". Quantities that could not be measured
are NaN, never sentinel values such as -99; the flag says why they are NaN.

The bits are grouped by stage so that one ``flags`` column can be decoded anywhere:

========  ==================  ===============================================================
bits      stage               meaning
========  ==================  ===============================================================
0-7       image               problems with the pixels themselves
8-19      morphometrics       statmorph / segmentation outcomes
20-31     photometry          catalogue cross-match and quality cuts
32-39     provenance          random weights, missing modality, unknown position
40-47     segmentation        Otsu pseudo-labels and predicted masks
========  ==================  ===============================================================

Use :func:`decode` to turn a stored integer into names, and :func:`describe` for a human sentence.

:data:`MORPH_UNTRUSTED` is the one definition of "do not trust these morphometrics": a morphometrics row
is trusted (``galaxy_features.morph_ok`` in SQL, :func:`morph_ok` here) when none of its bits is set.
"""

from __future__ import annotations

import enum

__all__ = ["MORPH_UNTRUSTED", "Flag", "decode", "describe", "morph_ok", "stage_mask"]


class Flag(enum.IntFlag):
    """Bit flags shared by every stage (see module docstring for the layout)."""

    # --- image (0-7) -------------------------------------------------------------------------
    IMAGE_BLANK = 1 << 0
    """Every pixel has the same value (or the image is empty)."""
    IMAGE_NAN = 1 << 1
    """Some pixels are NaN or infinite (they were replaced before measuring)."""
    IMAGE_SATURATED = 1 << 2
    """More than 5 % of the central pixels sit at the maximum value."""
    IMAGE_DUPLICATE = 1 << 3
    """Another galaxy has the identical image or lies within the duplicate radius."""

    # --- morphometrics (8-19) ----------------------------------------------------------------
    MORPH_NO_CENTRAL_SOURCE = 1 << 8
    """Segmentation found no source at the image centre."""
    MORPH_CENTRE_BLENDED = 1 << 9
    """A neighbour touching the central source was deblended off it and holds at least 5 % of its flux
    (``SegmentationOptions.blend_flux_fraction``, measured above the saddle between them): the masked
    pixels hide part of the galaxy and the boundary is uncertain. Untrusted (:data:`MORPH_UNTRUSTED`)."""
    MORPH_STATMORPH_FLAG = 1 << 10
    """statmorph raised its own warning flag (``flag`` > 0)."""
    MORPH_SERSIC_FAILED = 1 << 11
    """The Sersic fit did not converge (``flag_sersic`` > 0); Sersic values are NaN."""
    MORPH_TIMED_OUT = 1 << 12
    """statmorph exceeded the per-galaxy time limit; every value is NaN."""
    MORPH_FAILED = 1 << 13
    """statmorph raised an exception; every value is NaN."""
    MORPH_SMALL_SOURCE = 1 << 14
    """The central source covers too few pixels for meaningful non-parametric statistics."""
    MORPH_SATURATED = 1 << 15
    """Pixels of the central source sit at the composite's clip level (a flat-topped core): concentration,
    Gini and the Sersic index are biased low; ``morphometrics.saturated_pixels`` counts them."""
    MORPH_DEBLENDED = 1 << 16
    """Pieces of the central detection were deblended off and masked as neighbours (informational: the
    values are trusted unless ``MORPH_CENTRE_BLENDED`` is also set; the pieces may be faint neighbours
    or, for spirals, knots of the galaxy itself)."""

    # --- photometry (20-31) ------------------------------------------------------------------
    PHOT_NO_MATCH = 1 << 20
    """No catalogue object within the match radius."""
    PHOT_MATCH_FAR = 1 << 21
    """The nearest match lies beyond the match radius (kept for reference, not trusted)."""
    PHOT_NOT_CLEAN = 1 << 22
    """The catalogue's own clean flag is not set."""
    PHOT_NOT_GALAXY = 1 << 23
    """The matched object is not classified as a galaxy."""
    PHOT_MAG_ERR_HIGH = 1 << 24
    """A magnitude error exceeds the quality limit; colours using that band are NaN."""
    PHOT_MAG_MISSING = 1 << 25
    """A magnitude is missing or non-finite in the catalogue."""
    PHOT_MULTIPLE_CANDIDATES = 1 << 26
    """Several catalogue objects lie within the match radius (the nearest was taken)."""
    PHOT_QUERY_FAILED = 1 << 27
    """The catalogue service gave no usable answer for this galaxy's batch (after retries); values are
    NaN because they are unknown, not absent, and the next run asks again."""

    # --- embeddings / models (32-39) ---------------------------------------------------------
    RANDOM_WEIGHTS = 1 << 32
    """The encoder or backbone used randomly initialised weights (a named baseline, not DINOv2)."""
    MODALITY_MISSING = 1 << 33
    """An input modality of the fusion model (:mod:`models.fusion`: frozen-encoder embeddings, trusted
    morphometrics, photometry behind the quality cuts) was missing for this galaxy and was imputed with the
    training medians (its branch masked out); ``fusion_inputs.missing_modalities`` names which."""
    POSITION_UNKNOWN = 1 << 34
    """The catalogue gives no sky position for this galaxy (no ``ra`` / ``dec`` columns, or both cells
    empty): ``ra`` and ``dec`` are NaN (NULL in SQL), the galaxy is in no HEALPix pixel, takes part in no
    position-based duplicate grouping and no photometry cross-match (its ``photometry`` row carries this
    bit instead of ``PHOT_NO_MATCH``), and ``cone(...)`` is false for it."""

    # --- segmentation (40-47) ----------------------------------------------------------------
    SEG_OTSU_FAILED = 1 << 40
    """Otsu found no galaxy in the histogram: too few distinct pixel values, or the lower multi-Otsu
    threshold within ``min_snr`` sky RMS of the background (no bimodality: it split the noise). The
    pseudo-label is empty and is not trained on."""
    SEG_NO_CENTRAL_SOURCE = 1 << 41
    """No above-threshold region at (or near) the stamp centre: the mask is empty."""
    SEG_MASK_TOUCHES_EDGE = 1 << 42
    """The mask reaches the stamp border: the galaxy may extend beyond the stamp (area is a lower bound)."""


MORPH_UNTRUSTED = (
    Flag.IMAGE_BLANK
    | Flag.MORPH_NO_CENTRAL_SOURCE
    | Flag.MORPH_CENTRE_BLENDED
    | Flag.MORPH_STATMORPH_FLAG
    | Flag.MORPH_TIMED_OUT
    | Flag.MORPH_FAILED
    | Flag.MORPH_SMALL_SOURCE
    | Flag.MORPH_SATURATED
)
"""The bits that make a morphometrics row untrustworthy (``morph_ok`` false).

Nothing was measured (``IMAGE_BLANK``, ``MORPH_NO_CENTRAL_SOURCE``, ``MORPH_TIMED_OUT``,
``MORPH_FAILED``), statmorph itself warned (``MORPH_STATMORPH_FLAG``: its ``flag`` is 1 suspect or
worse), or the values are biased: a bright neighbour blended with the galaxy (``MORPH_CENTRE_BLENDED``),
too few pixels (``MORPH_SMALL_SOURCE``), a clipped core (``MORPH_SATURATED``). Not in it:
``IMAGE_NAN`` (the bad pixels are masked), ``MORPH_SERSIC_FAILED`` (the Sersic values are NaN, the
others are fine) and ``MORPH_DEBLENDED`` (faint neighbours masked). The SQL views get this value as
the macro ``morph_untrusted_mask()`` (``sql/__init__.py``)."""


def morph_ok(value: int | None) -> bool:
    """True when a morphometrics ``flags`` value has none of the :data:`MORPH_UNTRUSTED` bits.

    ``None`` (no morphometrics row) is not ok.
    """
    return value is not None and not int(value) & MORPH_UNTRUSTED


_STAGES: dict[str, tuple[int, int]] = {
    "image": (0, 8),
    "morphometrics": (8, 20),
    "photometry": (20, 32),
    "provenance": (32, 40),
    "segmentation": (40, 48),
}


def stage_mask(stage: str) -> int:
    """Return the integer mask that selects the bits of one stage.

    Parameters
    ----------
    stage : {"image", "morphometrics", "photometry", "provenance", "segmentation"}
        The stage name.

    Returns
    -------
    int
        ``flags & stage_mask(stage)`` keeps only that stage's bits.
    """
    if stage not in _STAGES:
        raise ValueError(f"unknown stage {stage!r}; known: {', '.join(_STAGES)}")
    lo, hi = _STAGES[stage]
    return ((1 << hi) - 1) ^ ((1 << lo) - 1)


def decode(value: int | None) -> list[str]:
    """Names of the flags set in ``value``.

    Parameters
    ----------
    value : int or None
        A stored bit field. ``None`` and ``0`` decode to an empty list.

    Returns
    -------
    list of str
        Flag names in bit order.

    Raises
    ------
    ValueError
        If ``value`` has bits that no flag defines (a corrupt or foreign value).

    Examples
    --------
    >>> decode(Flag.MORPH_TIMED_OUT | Flag.IMAGE_BLANK)
    ['IMAGE_BLANK', 'MORPH_TIMED_OUT']
    """
    if not value:
        return []
    value = int(value)
    known = 0
    names = []
    for flag in Flag:
        known |= flag.value
        if value & flag.value:
            names.append(flag.name)
    unknown = value & ~known
    if unknown:
        raise ValueError(f"flag value {value} has undefined bits {unknown:#x}")
    return names


def describe(value: int | None) -> str:
    """One human-readable line for a bit field: ``"ok"`` or the names joined by commas."""
    names = decode(value)
    return ", ".join(names) if names else "ok"
