-- Events: runs of consecutive segments of a recording where the same label is detected, merged into
-- one interval (gaps and islands: a segment without it, or a missing segment_index, ends an event).
-- Labels come from the `detections` view: what passes its class threshold (for a model without
-- thresholds, its top-1 label); a segment where nothing known is heard is in no event.
-- Parameters (DuckDB variables):
--     uri    optional: only this recording; NULL = every recording
--     model  optional: only this model; NULL = every model, each on its own rows
-- CLI: SET VARIABLE uri = 'file:///archive/a.wav'; .read sql/events.sql
WITH detected AS (
    SELECT
        model,
        uri,
        recording_id,
        segment_index,
        start_s,
        end_s,
        label,
        confidence,
        segment_index - row_number() OVER (PARTITION BY model, uri, label ORDER BY segment_index) AS island
    FROM detections
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
FROM detected
GROUP BY model, uri, recording_id, label, island
ORDER BY model, uri, start_s;
