-- Events: runs of consecutive segments of a recording with the same top-1 label, merged into one
-- interval (gaps and islands: a missing segment_index also ends an event).
-- Parameters (DuckDB variables):
--     uri    optional: only this recording; NULL = every recording
--     model  optional: only this model; NULL = every model, each on its own rows
-- CLI: SET VARIABLE uri = 'file:///archive/a.wav'; .read sql/events.sql
WITH top1 AS (
    SELECT
        model,
        uri,
        recording_id,
        segment_index,
        start_s,
        end_s,
        labels[1] AS label,
        confidences[1] AS confidence,
        segment_index - row_number() OVER (PARTITION BY model, uri, labels[1] ORDER BY segment_index) AS island
    FROM segments
    WHERE (getvariable('uri') IS NULL OR uri = getvariable('uri'))
        AND (getvariable('model') IS NULL OR model = getvariable('model'))
)
SELECT
    model,
    uri,
    recording_id,
    label,
    min(start_s) AS start_s,
    max(end_s) AS end_s,
    count(*) AS n_segments,
    min(segment_index) AS first_segment,
    max(segment_index) AS last_segment,
    avg(confidence) AS mean_confidence,
    max(confidence) AS max_confidence
FROM top1
GROUP BY model, uri, recording_id, label, island
ORDER BY model, uri, start_s;
