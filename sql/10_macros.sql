-- Unmeasured values are stored as NaN (with a flag saying why). In SQL, NaN sorts above every number
-- and poisons max()/avg(), so the views below show them as NULL.
CREATE MACRO nan_null(x) AS CASE WHEN isnan(x) THEN NULL ELSE x END;
