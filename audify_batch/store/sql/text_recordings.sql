-- Text report section: Recordings (current state). labeled includes the partial recordings (cut
-- short, labeled as far as readable), as the runs table counts them; partial says how many.
SELECT model, count(*) FILTER (status IN ('labeled', 'partial')) AS labeled,
        count(*) FILTER (status = 'partial') AS partial,
        count(*) FILTER (status = 'failed') AS failed,
        sum(n_segments) FILTER (status IN ('labeled', 'partial')) AS segments,
        sum(duration_s) FILTER (status IN ('labeled', 'partial')) AS audio_s
    FROM recordings GROUP BY model ORDER BY model;
