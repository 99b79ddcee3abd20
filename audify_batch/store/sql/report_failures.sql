-- Run report: failed recordings with their reasons.
-- Variables: model.
SELECT uri, error, finished_at FROM recordings
    WHERE model = getvariable('model') AND status = 'failed' ORDER BY uri;
