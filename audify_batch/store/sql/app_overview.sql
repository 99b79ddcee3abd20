-- Review desk (audify serve), overview: per model, its current recordings (labeled, partial,
-- failed), segments, hours of labeled audio, runs and reviewed segments.
-- Variables: none.
WITH current AS (
    SELECT model,
        count(*) AS recordings,
        count(*) FILTER (status IN ('labeled', 'partial')) AS labeled,
        count(*) FILTER (status = 'partial') AS partial,
        count(*) FILTER (status = 'failed') AS failed,
        coalesce(sum(n_segments) FILTER (status IN ('labeled', 'partial')), 0) AS segments,
        coalesce(sum(duration_s) FILTER (status IN ('labeled', 'partial')), 0) / 3600 AS hours
    FROM recordings GROUP BY model
), run_counts AS (
    SELECT model, count(*) AS runs, max(started_at) AS last_run_at FROM runs GROUP BY model
), reviewed AS (
    SELECT model, count(DISTINCT segment_id) AS reviewed_segments, count(*) AS verdicts
    FROM annotations GROUP BY model
)
SELECT model, coalesce(recordings, 0) AS recordings, coalesce(labeled, 0) AS labeled,
    coalesce(partial, 0) AS partial, coalesce(failed, 0) AS failed, coalesce(segments, 0) AS segments,
    coalesce(hours, 0) AS hours, coalesce(runs, 0) AS runs, last_run_at,
    coalesce(reviewed_segments, 0) AS reviewed_segments, coalesce(verdicts, 0) AS verdicts
FROM current
FULL JOIN run_counts USING (model)
LEFT JOIN reviewed USING (model)
ORDER BY last_run_at DESC NULLS LAST, model;
