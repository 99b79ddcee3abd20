-- Text report section: Partial recordings (current): cut short, labeled as far as readable.
SELECT model, uri, run_id, duration_s AS readable_s, n_segments, error AS reason
    FROM recordings WHERE status = 'partial' ORDER BY model, uri;
