"""Tables of the photometry stage (registered on import).

``photometry``: one row per galaxy, whether or not a catalogue object matched (``flags`` says why
values are NaN). Column names of catalogue quantities are the SDSS ``PhotoObj`` names; colours are
extinction-corrected model colours; ``abs_mag_r`` exists only where a redshift does and
``abs_mag_source`` says which (``sdss_specz`` or ``catalogue_redshift``).
"""

from __future__ import annotations

import pyarrow as pa

from warehouse.schemas import TableSpec, register

_BANDS = ("u", "g", "r", "i", "z")

_fields = [
    pa.field("galaxy_id", pa.string(), nullable=False),
    pa.field("shard", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("objid", pa.int64()),
    pa.field("sep_arcsec", pa.float64()),
    pa.field("n_candidates", pa.int32(), nullable=False),
    pa.field("type", pa.int16()),
    pa.field("clean", pa.int16()),
]
for _prefix in ("modelMag_", "modelMagErr_", "petroMag_", "petroMagErr_", "extinction_"):
    _fields += [pa.field(f"{_prefix}{b}", pa.float64()) for b in _BANDS]
_fields += [
    pa.field("petroR50_r", pa.float64()),
    pa.field("petroR90_r", pa.float64()),
    pa.field("fracDeV_r", pa.float64()),
    pa.field("specz", pa.float64()),
    pa.field("u_g", pa.float64()),
    pa.field("g_r", pa.float64()),
    pa.field("r_i", pa.float64()),
    pa.field("i_z", pa.float64()),
    pa.field("u_r", pa.float64()),
    pa.field("abs_mag_r", pa.float64()),
    pa.field("abs_mag_source", pa.string()),
    pa.field("abs_mag_redshift", pa.float64()),
    pa.field("quality_ok", pa.bool_(), nullable=False),
    pa.field("flags", pa.int64(), nullable=False),
]

PHOTOMETRY = register(
    TableSpec(
        name="photometry",
        keys=("galaxy_id",),
        description="SDSS-like photometry per galaxy: match, magnitudes, extinction, colours, quality flags",
        columns=pa.schema(_fields),
        metadata={"flags": "features.flags.Flag PHOT_* bits (20-31)", "colours": "extinction-corrected model mags"},
    )
)
