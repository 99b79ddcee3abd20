-- Run report: labeled and failed recordings, segments and hours of one model.
-- Variables: model.
SELECT count(*) FILTER (status = 'labeled') AS labeled,
     count(*) FILTER (status = 'failed') AS failed,
     coalesce(sum(n_segments) FILTER (status = 'labeled'), 0) AS segments,
     coalesce(sum(duration_s) FILTER (status = 'labeled'), 0) / 3600 AS audio_h
    FROM recordings WHERE model = getvariable('model');
