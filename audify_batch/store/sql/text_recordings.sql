-- Text report section: Recordings (current state).
SELECT model, count(*) FILTER (status = 'labeled') AS labeled,
        count(*) FILTER (status = 'failed') AS failed,
        sum(n_segments) FILTER (status = 'labeled') AS segments,
        sum(duration_s) FILTER (status = 'labeled') AS audio_s
    FROM recordings GROUP BY model ORDER BY model;
