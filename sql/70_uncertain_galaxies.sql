-- Galaxies whose class-conditional conformal set (newest gated version of each model) holds more than one
-- class, with their image's id (images.galaxy_id, galaxies.image_sha1): the ones to look at by eye.
-- (Mutual information from MC dropout is not stored yet.)
CREATE VIEW uncertain_galaxies AS
WITH latest AS (SELECT name, max(version) AS version FROM models WHERE gate_passed GROUP BY name)
SELECT p.galaxy_id, g.image_sha1, p.model_name, p.model_version, p.split, p.predicted_name,
       p.conformal_set, p.conformal_set_size, p.marginal_set, p.temperature,
       list_max(p.calibrated_probabilities) AS calibrated_confidence, g.label_name
FROM predictions p
JOIN latest l ON p.model_name = l.name AND p.model_version = l.version
JOIN galaxies g USING (galaxy_id)
WHERE p.conformal_set_size > 1;
