-- Run report: current partial recordings (cut short, labeled as far as readable) with how much was read.
-- Variables: model.
SELECT uri, error AS reason, duration_s AS readable_s, n_segments, finished_at FROM recordings
    WHERE model = getvariable('model') AND status = 'partial' ORDER BY uri;
