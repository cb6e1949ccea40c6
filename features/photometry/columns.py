"""Canonical photometry columns (SDSS ``PhotoObj`` names) and the mapping of other names onto them.

Every catalogue, whether a file or the SDSS service, is turned into these columns before anything
else happens, so the quality cuts and the colours see one vocabulary. The names are those of the
SDSS DR17 ``PhotoObj`` view (https://skyserver.sdss.org/dr17/en/help/browser/browser.aspx), plus
``specz`` for the redshift of the best science-primary spectrum (``SpecObj.z``).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "BANDS",
    "CANONICAL",
    "COLOURS",
    "FLOAT_COLUMNS",
    "INT_COLUMNS",
    "MAG_COLUMNS",
    "MAG_ERR_COLUMNS",
    "REQUIRED",
    "SENTINEL_BELOW",
    "canonical_name",
    "resolve_mapping",
]

BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z")
"""SDSS bands, blue to red."""

MAG_COLUMNS: tuple[str, ...] = tuple(f"modelMag_{b}" for b in BANDS)
MAG_ERR_COLUMNS: tuple[str, ...] = tuple(f"modelMagErr_{b}" for b in BANDS)
PETRO_COLUMNS: tuple[str, ...] = tuple(f"petroMag_{b}" for b in BANDS)
PETRO_ERR_COLUMNS: tuple[str, ...] = tuple(f"petroMagErr_{b}" for b in BANDS)
EXTINCTION_COLUMNS: tuple[str, ...] = tuple(f"extinction_{b}" for b in BANDS)

INT_COLUMNS: tuple[str, ...] = ("objid", "type", "clean")
"""Integer columns: SDSS object id, photometric type (3 galaxy, 6 star), clean flag (0/1)."""

FLOAT_COLUMNS: tuple[str, ...] = (
    "ra",
    "dec",
    *MAG_COLUMNS,
    *MAG_ERR_COLUMNS,
    *PETRO_COLUMNS,
    *PETRO_ERR_COLUMNS,
    *EXTINCTION_COLUMNS,
    "petroR50_r",
    "petroR90_r",
    "fracDeV_r",
    "specz",
)
"""Floating-point columns (degrees, AB magnitudes, arcsec, unitless); NaN where unknown."""

CANONICAL: tuple[str, ...] = ("objid", "ra", "dec", "type", "clean", *FLOAT_COLUMNS[2:])
"""Every canonical column, in the order files and the service deliver them."""

REQUIRED: tuple[str, ...] = ("objid", "ra", "dec", *MAG_COLUMNS, *MAG_ERR_COLUMNS)
"""Columns a catalogue must have; the others are optional (NaN, and named in the result, when absent)."""

COLOURS: dict[str, tuple[str, str]] = {
    "u_g": ("u", "g"),
    "g_r": ("g", "r"),
    "r_i": ("r", "i"),
    "i_z": ("i", "z"),
    "u_r": ("u", "r"),
}
"""Stored colours and the two bands each one subtracts (blue minus red)."""

SENTINEL_BELOW = -1000.0
"""SDSS writes -9999 (and -1000 for some errors) where a quantity was not measured; values at or
below this are read as missing (NaN), never kept as numbers."""

_LOWER = {name.lower(): name for name in CANONICAL}


def canonical_name(name: str) -> str | None:
    """The canonical spelling of ``name`` compared without case (``MODELMAG_R`` -> ``modelMag_r``).

    Returns ``None`` for a name that is not canonical.
    """
    return _LOWER.get(name.strip().lower())


def resolve_mapping(names: list[str], mapping: Mapping[str, str] | None = None) -> dict[str, str]:
    """Which file column feeds which canonical column.

    Parameters
    ----------
    names : list of str
        Column names present in a file.
    mapping : mapping, optional
        ``{file column: canonical column}`` for files that use other names (e.g. ``{"RA_ICRS": "ra"}``).
        Explicit entries win over names that already match; canonical names are compared without case.

    Returns
    -------
    dict
        ``{canonical column: file column}`` for every canonical column that can be filled.

    Raises
    ------
    ValueError
        If the mapping names a column the file lacks, targets a non-canonical column, or feeds one
        canonical column from two file columns.
    """
    mapping = dict(mapping or {})
    present = set(names)
    out: dict[str, str] = {}
    for src, dst in mapping.items():
        canon = canonical_name(dst)
        if canon is None:
            raise ValueError(f"column mapping {src!r} -> {dst!r}: {dst!r} is not a canonical column")
        if src not in present:
            raise ValueError(f"column mapping names {src!r}, which the file does not have")
        if canon in out:
            raise ValueError(f"column mapping feeds {canon!r} from both {out[canon]!r} and {src!r}")
        out[canon] = src
    mapped_sources = set(mapping)
    for name in names:
        if name in mapped_sources:
            continue
        canon = canonical_name(name)
        if canon is not None and canon not in out:
            out[canon] = name
    return out
