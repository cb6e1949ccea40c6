-- One row per galaxy: the mask of the newest model version that wrote masks (the U-Net), with the
-- features measured on it, its gate verdict (U-Net above Otsu against the demo's true masks), the IoU
-- with its own Otsu pseudo-label and, for demo galaxies, IoU / Dice with the true mask. NaN shows as NULL.
CREATE VIEW galaxy_masks AS
WITH latest AS (SELECT model_name AS name, max(model_version) AS version FROM masks GROUP BY model_name)
SELECT
    m.galaxy_id, g.label_name, m.model_name, m.model_version, r.gate_passed, m.split,
    m.area_px, nan_null(m.area_arcsec2) AS area_arcsec2,
    nan_null(m.centroid_x_px) AS centroid_x_px, nan_null(m.centroid_y_px) AS centroid_y_px,
    nan_null(m.ellipticity) AS ellipticity, nan_null(m.bulge_fraction) AS bulge_fraction,
    m.covers_centre, nan_null(m.iou_otsu) AS iou_otsu,
    nan_null(m.iou_truth) AS iou_truth, nan_null(m.dice_truth) AS dice_truth,
    nan_null(m.otsu_iou_truth) AS otsu_iou_truth, nan_null(m.otsu_dice_truth) AS otsu_dice_truth,
    m.flags AS mask_flags
FROM masks m
JOIN latest l ON m.model_name = l.name AND m.model_version = l.version
JOIN models r ON r.name = m.model_name AND r.version = m.model_version
JOIN galaxies g USING (galaxy_id);
