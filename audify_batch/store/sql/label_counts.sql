-- Per recording and model: how many segments have each detected label (a model without thresholds:
-- its top-1 label), and their share of the recording's segments; `(nothing known)` counts the
-- segments where no label passes its threshold.
-- Parameters (DuckDB variables; unset = NULL):
--     model  optional: only this model ('<name>-<version>'); NULL = every model, each on its own rows
--     uri    optional: only this recording; NULL = every recording
-- CLI: SET VARIABLE model = 'audify-esc50-yamnet-2.0.1'; .read sql/label_counts.sql   (after sql/views.sql)
WITH chosen AS (
    SELECT * FROM segments
    WHERE (getvariable('model') IS NULL OR model = getvariable('model'))
        AND (getvariable('uri') IS NULL OR uri = getvariable('uri'))
), per_segment AS (
    SELECT model, uri, recording_id,
        unnest(CASE WHEN len(coalesce(detected, labels[1:1])) = 0 THEN ['(nothing known)']
            ELSE coalesce(detected, labels[1:1]) END) AS label
    FROM chosen
)
SELECT
    p.model,
    p.uri,
    p.recording_id,
    p.label,
    count(*) AS n_segments,
    count(*) / any_value(t.n) AS share
FROM per_segment AS p
JOIN (SELECT model, uri, count(*) AS n FROM chosen GROUP BY ALL) AS t USING (model, uri)
GROUP BY p.model, p.uri, p.recording_id, p.label
ORDER BY p.model, p.uri, n_segments DESC, p.label;
