-- Export (`audify export`): the detections of one model over every recording, one row per segment
-- and detected label (the `detections` view: labels past their class threshold, top-1 for a model
-- without thresholds), with the recording's sample rate for Raven's frequency band.
-- Parameters (DuckDB variables):
--     model      required: '<name>-<version>'
--     label      optional: only this label; NULL = every label
--     min_score  optional: only confidence >= min_score (compared as FLOAT, the stored type, so
--                0.9 keeps a stored 0.9); NULL = any confidence
-- CLI: SET VARIABLE model = 'audify-esc50-yamnet-2.0.1'; .read sql/export_detections.sql
SELECT
    d.uri,
    d.recording_id,
    d.segment_index,
    d.start_s,
    d.end_s,
    d.label,
    d.confidence AS score,
    d.model,
    r.sample_rate_hz
FROM detections AS d
JOIN recordings AS r USING (model, uri, recording_id)
WHERE d.model = coalesce(getvariable('model'), error('export_detections.sql: SET VARIABLE model = ''...''; first'))
    AND (getvariable('label') IS NULL OR d.label = getvariable('label'))
    AND (getvariable('min_score') IS NULL OR d.confidence >= getvariable('min_score')::FLOAT)
ORDER BY d.uri, d.start_s, d.end_s, d.label;
