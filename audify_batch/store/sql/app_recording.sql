-- Review desk (audify serve): one current recording of one model by its recording_id.
-- Variables: model, recording_id.
SELECT recording_id, uri, status, error, duration_s, n_segments, sample_rate_hz, channels, size_bytes,
    run_id, finished_at
FROM recordings
WHERE model = getvariable('model') AND recording_id = getvariable('recording_id')
LIMIT 1;
