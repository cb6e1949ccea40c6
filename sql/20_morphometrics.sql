-- One row per galaxy with the main morphometrics of every measured band side by side
-- (r, g, z and the luminance proxy); NaN shows as NULL, each band's flags say why.
CREATE VIEW morphology AS
SELECT
    galaxy_id,
    any_value(shard) AS shard,
    any_value(image_kind) AS image_kind,
    max(CASE WHEN band = 'r' THEN method END) AS method_r,
    max(CASE WHEN band = 'r' THEN nan_null(gini) END) AS gini_r,
    max(CASE WHEN band = 'r' THEN nan_null(m20) END) AS m20_r,
    max(CASE WHEN band = 'r' THEN nan_null(concentration) END) AS concentration_r,
    max(CASE WHEN band = 'r' THEN nan_null(asymmetry) END) AS asymmetry_r,
    max(CASE WHEN band = 'r' THEN nan_null(smoothness) END) AS smoothness_r,
    max(CASE WHEN band = 'r' THEN nan_null(sersic_n) END) AS sersic_n_r,
    max(CASE WHEN band = 'r' THEN nan_null(r50_arcsec) END) AS r50_arcsec_r,
    max(CASE WHEN band = 'r' THEN flags END) AS flags_r,
    max(CASE WHEN band = 'g' THEN nan_null(gini) END) AS gini_g,
    max(CASE WHEN band = 'g' THEN nan_null(concentration) END) AS concentration_g,
    max(CASE WHEN band = 'g' THEN nan_null(asymmetry) END) AS asymmetry_g,
    max(CASE WHEN band = 'g' THEN flags END) AS flags_g,
    max(CASE WHEN band = 'z' THEN nan_null(gini) END) AS gini_z,
    max(CASE WHEN band = 'z' THEN nan_null(concentration) END) AS concentration_z,
    max(CASE WHEN band = 'z' THEN nan_null(asymmetry) END) AS asymmetry_z,
    max(CASE WHEN band = 'z' THEN flags END) AS flags_z,
    max(CASE WHEN band = 'luminance' THEN nan_null(gini) END) AS gini_luminance,
    max(CASE WHEN band = 'luminance' THEN nan_null(m20) END) AS m20_luminance,
    max(CASE WHEN band = 'luminance' THEN nan_null(concentration) END) AS concentration_luminance,
    max(CASE WHEN band = 'luminance' THEN nan_null(asymmetry) END) AS asymmetry_luminance,
    max(CASE WHEN band = 'luminance' THEN flags END) AS flags_luminance,
    count(*) AS bands_measured
FROM morphometrics
GROUP BY galaxy_id;
