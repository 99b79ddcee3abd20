-- Run report: every run of one model, newest first. n_labeled includes the partial recordings
-- (cut short, labeled as far as readable); n_partial, how many of them, from their recordings rows.
-- Figures unrounded: the report rounds what it shows in one place (report/html.py format_value).
-- Variables: model.
WITH partial AS (
    SELECT run_id, count(*) AS n_partial FROM recording_history
    WHERE model = getvariable('model') AND status = 'partial' GROUP BY run_id
)
SELECT run_id, started_at, status, n_recordings, n_labeled, coalesce(n_partial, 0) AS n_partial,
     n_skipped, n_failed, n_segments,
     audio_s / 3600 AS audio_h, wall_s, audio_s / nullif(wall_s, 0) AS realtime_x
    FROM runs LEFT JOIN partial USING (run_id)
    WHERE model = getvariable('model') ORDER BY started_at DESC, run_id DESC;
