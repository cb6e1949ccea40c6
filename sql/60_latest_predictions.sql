-- Predictions of the newest version of every model that passed its gate, with the true label beside them.
CREATE VIEW latest_predictions AS
WITH latest AS (SELECT name, max(version) AS version FROM models WHERE gate_passed GROUP BY name)
SELECT p.galaxy_id, p.model_name, p.model_version, p.predicted_label, p.predicted_name,
       list_max(p.probabilities) AS confidence, p.probabilities, p.split,
       g.label, g.label_name, p.predicted_label = g.label AS correct
FROM predictions p
JOIN latest l ON p.model_name = l.name AND p.model_version = l.version
JOIN galaxies g USING (galaxy_id);
