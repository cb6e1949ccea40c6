-- Galaxies to look at by eye, per newest gated version of each model: a class-conditional conformal set
-- of more than one class, or a mutual information (MC dropout, epistemic) in the top decile of that
-- version's galaxies; with their image's id (images.galaxy_id, galaxies.image_sha1).
CREATE VIEW uncertain_galaxies AS
WITH latest AS (SELECT name, max(version) AS version FROM models WHERE gate_passed GROUP BY name),
scored AS (
    SELECT p.*, quantile_cont(p.mutual_information, 0.9)
               OVER (PARTITION BY p.model_name, p.model_version) AS mi_p90
    FROM predictions p JOIN latest l ON p.model_name = l.name AND p.model_version = l.version
)
SELECT s.galaxy_id, g.image_sha1, s.model_name, s.model_version, s.split, s.predicted_name,
       s.conformal_set, s.conformal_set_size, s.marginal_set, s.temperature,
       list_max(s.calibrated_probabilities) AS calibrated_confidence, s.predictive_entropy,
       s.mutual_information, s.mutual_information >= s.mi_p90 AS high_mutual_information, g.label_name
FROM scored s
JOIN galaxies g USING (galaxy_id)
WHERE s.conformal_set_size > 1 OR s.mutual_information >= s.mi_p90;
