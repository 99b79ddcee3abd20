-- Text report section: Runs. n_labeled includes the partial recordings (cut short, labeled as far
-- as readable); n_partial, how many of them, from their recordings rows.
WITH partial AS (
    SELECT model, run_id, count(*) AS n_partial FROM recording_history
    WHERE status = 'partial' GROUP BY model, run_id
)
SELECT model, run_id, started_at, status, n_recordings, n_labeled, coalesce(n_partial, 0) AS n_partial,
        n_failed, n_skipped, n_segments, audio_s, wall_s
    FROM runs LEFT JOIN partial USING (model, run_id)
    ORDER BY model, started_at, run_id;
