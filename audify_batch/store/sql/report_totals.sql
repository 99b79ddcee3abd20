-- Run report: current recordings of one model: labeled (partial ones included: cut short, labeled
-- as far as readable, as the runs table counts them), of those partial, failed; their segments and
-- hours of audio (a partial recording's readable part).
-- Variables: model.
SELECT count(*) FILTER (status IN ('labeled', 'partial')) AS labeled,
     count(*) FILTER (status = 'partial') AS partial,
     count(*) FILTER (status = 'failed') AS failed,
     coalesce(sum(n_segments) FILTER (status IN ('labeled', 'partial')), 0) AS segments,
     coalesce(sum(duration_s) FILTER (status IN ('labeled', 'partial')), 0) / 3600 AS audio_h
    FROM recordings WHERE model = getvariable('model');
