"""Tables of the morphometrics stage (registered on import).

``morphometrics``: one row per galaxy and measurement band, written by the ``morphometrics`` asset from
:mod:`features.morphometrics` (statmorph on the central source). Unmeasurable values are NaN and the
``flags`` column (``features.flags.Flag``, bits 0-19) says why; ``statmorph_flag`` and ``flag_sersic``
keep statmorph's own flags (``flag_sersic`` -1: the Sersic fit was not run).
"""

from __future__ import annotations

import pyarrow as pa

from warehouse.schemas import TableSpec, register

MORPH_QUANTITIES: tuple[str, ...] = (
    "gini", "m20", "gini_m20_bulge", "gini_m20_merger",
    "concentration", "asymmetry", "smoothness",
    "multimode", "intensity", "deviation",
    "outer_asymmetry", "shape_asymmetry", "rms_asymmetry2",
    "r20", "r50", "r80", "rpetro_circ", "rpetro_ellip", "rhalf_circ", "rhalf_ellip", "rmax_circ",
    "ellipticity", "elongation", "orientation",
    "xc_centroid", "yc_centroid", "xc_asymmetry", "yc_asymmetry",
    "flux_circ", "sky_sigma", "sn_per_pixel",
    "sersic_n", "sersic_rhalf", "sersic_ellip", "sersic_theta", "sersic_amplitude", "sersic_chi2_dof",
)
"""statmorph's scalar outputs kept per row (radii, positions in pixels of the stored stamp)."""

MORPH_ARCSEC_RADII: tuple[str, ...] = (
    "r20", "r50", "r80", "rpetro_circ", "rpetro_ellip", "rhalf_circ", "rhalf_ellip", "rmax_circ", "sersic_rhalf",
)
"""Radii also stored in arcsec as ``<name>_arcsec``."""

MORPHOMETRICS = register(
    TableSpec(
        name="morphometrics",
        keys=("galaxy_id", "band"),
        description="statmorph non-parametric morphology (Gini, M20, CAS, MID, Sersic) per galaxy and band",
        columns=pa.schema(
            [
                pa.field("galaxy_id", pa.string(), nullable=False),
                pa.field("band", pa.string(), nullable=False),
                pa.field("shard", pa.string(), nullable=False),
                pa.field("image_kind", pa.string(), nullable=False),
                pa.field("method", pa.string(), nullable=False),
                pa.field("pxscale", pa.float64()),
                *[pa.field(q, pa.float64()) for q in MORPH_QUANTITIES],
                *[pa.field(f"{r}_arcsec", pa.float64()) for r in MORPH_ARCSEC_RADII],
                pa.field("background", pa.float64()),
                pa.field("bkg_rms", pa.float64()),
                pa.field("segment_area", pa.int64()),
                pa.field("saturated_pixels", pa.int64()),
                pa.field("statmorph_flag", pa.int16()),
                pa.field("flag_sersic", pa.int16()),
                pa.field("flags", pa.int64(), nullable=False),
                pa.field("runtime_s", pa.float64()),
                pa.field("error", pa.string()),
                pa.field("statmorph_version", pa.string(), nullable=False),
            ]
        ),
    )
)
