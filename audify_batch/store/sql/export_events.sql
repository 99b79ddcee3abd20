-- Export (`audify export --events`): the merged events of events.sql for one model over every
-- recording, with the recording's sample rate; an event's score is its max_confidence (so
-- min_score keeps an event when one of its segments would pass it as a detection).
-- DuckDB has no include: this file runs the text of events.sql, bound as the variable events_sql
-- (audify_batch.review.export binds it), with that file's own parameters uri = NULL (every
-- recording) and model.
-- Parameters (DuckDB variables):
--     events_sql  required: the text of events.sql
--     model       required: '<name>-<version>'
--     uri         must be NULL (events.sql's filter on one recording)
--     label       optional: only this label; NULL = every label
--     min_score   optional: only events with max_confidence >= min_score (as FLOAT); NULL = any
-- CLI: SET VARIABLE events_sql = (SELECT content FROM read_text('sql/events.sql'));
--      SET VARIABLE model = 'audify-esc50-yamnet-2.0.1'; .read sql/export_events.sql
SELECT
    e.uri,
    e.recording_id,
    e.start_s,
    e.end_s,
    e.label,
    e.max_confidence AS score,
    e.n_segments,
    e.model,
    r.sample_rate_hz
FROM query(coalesce(getvariable('events_sql'),
        error('export_events.sql: SET VARIABLE events_sql = (SELECT content FROM read_text(''sql/events.sql'')); first')))
    AS e
JOIN recordings AS r USING (model, uri, recording_id)
WHERE e.model = coalesce(getvariable('model'), error('export_events.sql: SET VARIABLE model = ''...''; first'))
    AND (getvariable('label') IS NULL OR e.label = getvariable('label'))
    AND (getvariable('min_score') IS NULL OR e.max_confidence >= getvariable('min_score')::FLOAT)
ORDER BY e.uri, e.start_s, e.end_s, e.label;
