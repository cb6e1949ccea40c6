-- Anomaly scores beside the galaxy's features: one row per (galaxy, encoder, method); anomaly_rank 1 is the
-- most anomalous galaxy of its encoder and method, 0 the least.
CREATE VIEW anomalies AS
SELECT a.galaxy_id, a.encoder, a.method, a.score AS anomaly_score, a.rank AS anomaly_rank,
       a.embeddings_version, f.* EXCLUDE (galaxy_id)
FROM anomaly_scores a
JOIN galaxy_features f USING (galaxy_id);
