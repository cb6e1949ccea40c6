"""The ten Galaxy10 DECaLS classes (Leung & Bovy 2019; Walmsley et al. 2022 volunteer votes)."""

from __future__ import annotations

__all__ = ["GALAXY10_CLASSES", "GALAXY10_COUNTS"]

GALAXY10_CLASSES: tuple[str, ...] = (
    "Disturbed",
    "Merging",
    "Round Smooth",
    "In-between Round Smooth",
    "Cigar Shaped Smooth",
    "Barred Spiral",
    "Unbarred Tight Spiral",
    "Unbarred Loose Spiral",
    "Edge-on without Bulge",
    "Edge-on with Bulge",
)
"""Class names by label index (``ans`` in ``Galaxy10_DECals.h5``)."""

GALAXY10_COUNTS: tuple[int, ...] = (1081, 1853, 2645, 2027, 334, 2043, 1829, 2628, 1423, 1873)
"""Number of galaxies per class in the 17,736-galaxy file."""
