"""Tables of the demo stage (registered on import).

``truth``: the ground truth of every synthetic demo galaxy (``features.sources.synthetic``), one row per
galaxy, written by the ``galaxies`` asset for the ``demo`` source only. It holds every physical parameter
the galaxy was drawn from (per-component Sersic index, half-light radius, axis ratio, bulge-to-total, bar,
arms and pitch angle, knots, dust lane, merger companion, redshift, colours), the PSF and sky noise it was
observed with, the true g / r / z fluxes and magnitudes of the rendered noiseless target, and the true
galaxy mask as a PNG (255 where the noiseless PSF-convolved target exceeds the r-band sky sigma).

Units: fluxes in nanomaggies (AB zeropoint 22.5); magnitudes AB including Galactic extinction; component
radii are semi-major-axis half-light radii in arcsec; ``r50_arcsec`` / ``r90_arcsec`` are circular radii
of the rendered r-band target; angles in degrees from the image +column axis toward +row.

The column list mirrors ``features.sources.synthetic.TRUTH_SCHEMA`` (``features`` never imports
``warehouse``); ``tests/test_synthetic.py`` checks that the two are equal.
"""

from __future__ import annotations

import pyarrow as pa

from warehouse.schemas import TableSpec, register

_F = pa.float64()

TRUTH = register(
    TableSpec(
        name="truth",
        keys=("galaxy_id",),
        description="ground truth of the synthetic demo galaxies: physical parameters, true magnitudes, true masks",
        columns=pa.schema(
            [
                pa.field("galaxy_id", pa.string(), nullable=False),
                pa.field("label", pa.int16(), nullable=False),
                pa.field("label_name", pa.string(), nullable=False),
                pa.field("redshift", _F),
                pa.field("ra", _F),
                pa.field("dec", _F),
                pa.field("ebv", _F),
                pa.field("stamp_size", pa.int32(), nullable=False),
                pa.field("centre_x_px", _F),
                pa.field("centre_y_px", _F),
                pa.field("pa_deg", _F),
                pa.field("inclination_deg", _F),
                pa.field("axis_ratio", _F),
                pa.field("disk_q0", _F),
                pa.field("abs_mag_r", _F),
                pa.field("model_mag_r", _F),
                pa.field("bulge_to_total", _F),
                pa.field("bulge_n", _F),
                pa.field("bulge_hlr_arcsec", _F),
                pa.field("bulge_q", _F),
                pa.field("disk_n", _F),
                pa.field("disk_hlr_arcsec", _F),
                pa.field("has_bar", pa.bool_(), nullable=False),
                pa.field("bar_n", _F),
                pa.field("bar_hlr_arcsec", _F),
                pa.field("bar_q", _F),
                pa.field("bar_angle_deg", _F),
                pa.field("bar_fraction", _F),
                pa.field("n_arms", pa.int16(), nullable=False),
                pa.field("pitch_deg", _F),
                pa.field("arm_strength", _F),
                pa.field("n_knots", pa.int16(), nullable=False),
                pa.field("knot_fraction", _F),
                pa.field("has_dust_lane", pa.bool_(), nullable=False),
                pa.field("dust_tau_r", _F),
                pa.field("asymmetry", _F),
                pa.field("irregular_fraction", _F),
                pa.field("n_clumps", pa.int16(), nullable=False),
                pa.field("is_merger", pa.bool_(), nullable=False),
                pa.field("companion_flux_ratio", _F),
                pa.field("companion_sep_arcsec", _F),
                pa.field("companion_n", _F),
                pa.field("companion_hlr_arcsec", _F),
                pa.field("companion_q", _F),
                pa.field("tail_fraction", _F),
                pa.field("bulge_g_r", _F),
                pa.field("bulge_r_z", _F),
                pa.field("disk_g_r", _F),
                pa.field("disk_r_z", _F),
                pa.field("knot_g_r", _F),
                pa.field("knot_r_z", _F),
                pa.field("psf_fwhm_g_arcsec", _F),
                pa.field("psf_fwhm_r_arcsec", _F),
                pa.field("psf_fwhm_z_arcsec", _F),
                pa.field("psf_beta", _F),
                pa.field("sky_sigma_g", _F),
                pa.field("sky_sigma_r", _F),
                pa.field("sky_sigma_z", _F),
                pa.field("flux_g", _F),
                pa.field("flux_r", _F),
                pa.field("flux_z", _F),
                pa.field("mag_g", _F),
                pa.field("mag_r", _F),
                pa.field("mag_z", _F),
                pa.field("g_r", _F),
                pa.field("r_z", _F),
                pa.field("r50_arcsec", _F),
                pa.field("r90_arcsec", _F),
                pa.field("n_field_stars", pa.int16(), nullable=False),
                pa.field("n_field_galaxies", pa.int16(), nullable=False),
                pa.field("mask_threshold", _F),
                pa.field("mask_area_px", pa.int32(), nullable=False),
                pa.field("mask_png", pa.large_binary(), nullable=False),
            ]
        ),
    )
)
