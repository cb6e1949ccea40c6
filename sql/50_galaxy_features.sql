-- One row per galaxy: catalogue, morphometrics of its primary band (r for flux-calibrated or demo images,
-- else the first band measured) and SDSS photometry. NaN shows as NULL; each stage's flags column says why.
-- morph_ok: measured, and none of the morph_untrusted_mask() bits (features.flags.MORPH_UNTRUSTED) set.
CREATE VIEW galaxy_features AS
WITH morph AS (
    SELECT * FROM (
        SELECT *, row_number() OVER (
            PARTITION BY galaxy_id
            ORDER BY CASE band WHEN 'r' THEN 0 WHEN 'luminance' THEN 1 ELSE 2 END, band
        ) AS _rank
        FROM morphometrics
    ) WHERE _rank = 1
)
SELECT
    g.galaxy_id, g.source, g.native_id, g.shard, g.ra, g.dec, g.redshift, g.pxscale,
    g.label, g.label_name, g.duplicate_group, g.flags AS image_flags,
    m.band AS morph_band, m.method AS morph_method,
    nan_null(m.gini) AS gini, nan_null(m.m20) AS m20,
    nan_null(m.gini_m20_bulge) AS gini_m20_bulge, nan_null(m.gini_m20_merger) AS gini_m20_merger,
    nan_null(m.concentration) AS concentration, nan_null(m.asymmetry) AS asymmetry,
    nan_null(m.smoothness) AS smoothness,
    nan_null(m.multimode) AS multimode, nan_null(m.intensity) AS intensity, nan_null(m.deviation) AS deviation,
    nan_null(m.outer_asymmetry) AS outer_asymmetry, nan_null(m.shape_asymmetry) AS shape_asymmetry,
    nan_null(m.r20_arcsec) AS r20_arcsec, nan_null(m.r50_arcsec) AS r50_arcsec,
    nan_null(m.r80_arcsec) AS r80_arcsec, nan_null(m.rpetro_circ_arcsec) AS rpetro_circ_arcsec,
    nan_null(m.ellipticity) AS ellipticity, nan_null(m.elongation) AS elongation,
    nan_null(m.sersic_n) AS sersic_n, nan_null(m.sersic_rhalf_arcsec) AS sersic_rhalf_arcsec,
    nan_null(m.sn_per_pixel) AS sn_per_pixel, m.flags AS morph_flags,
    coalesce((m.flags & morph_untrusted_mask()) = 0, false) AS morph_ok,
    nan_null(p.modelMag_g) AS mag_g, nan_null(p.modelMag_r) AS mag_r, nan_null(p.modelMag_z) AS mag_z,
    nan_null(p.u_g) AS u_g, nan_null(p.g_r) AS g_r, nan_null(p.r_i) AS r_i, nan_null(p.i_z) AS i_z,
    nan_null(p.u_r) AS u_r,
    nan_null(p.petroR50_r) AS petro_r50_r, nan_null(p.petroR90_r) AS petro_r90_r,
    nan_null(p.fracDeV_r) AS frac_dev_r, nan_null(p.specz) AS specz,
    nan_null(p.sep_arcsec) AS match_sep_arcsec, p.quality_ok AS phot_quality_ok, p.flags AS phot_flags
FROM galaxies g
LEFT JOIN morph m USING (galaxy_id)
LEFT JOIN photometry p USING (galaxy_id);
