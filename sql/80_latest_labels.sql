-- People's labels: the newest per (galaxy, name, who) of the append-only labels table (ties: the larger label_id).
CREATE VIEW latest_labels AS
SELECT galaxy_id, name, value, who, labelled_at, source, label_id
FROM (
    SELECT *, row_number() OVER (PARTITION BY galaxy_id, name, who ORDER BY labelled_at DESC, label_id DESC) AS _n
    FROM labels
) WHERE _n = 1;
