-- Per recording and model: how many segments have each top-1 label, and their share of the recording.
-- Parameters (DuckDB variables; unset = NULL):
--     model  optional: only this model ('<name>-<version>'); NULL = every model, each on its own rows
--     uri    optional: only this recording; NULL = every recording
-- CLI: SET VARIABLE model = 'audify-esc50-resnet-1.0.0'; .read sql/label_counts.sql   (after sql/views.sql)
SELECT
    model,
    uri,
    recording_id,
    label,
    count(*) AS n_segments,
    count(*) / sum(count(*)) OVER (PARTITION BY model, uri) AS share
FROM labels
WHERE rank = 1
    AND (getvariable('model') IS NULL OR model = getvariable('model'))
    AND (getvariable('uri') IS NULL OR uri = getvariable('uri'))
GROUP BY model, uri, recording_id, label
ORDER BY model, uri, n_segments DESC, label;
