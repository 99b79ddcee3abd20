-- Text report section: Failures (current).
SELECT model, uri, run_id, finished_at, error
    FROM recordings WHERE status = 'failed' ORDER BY model, uri;
