-- Review desk (audify serve): one labeled segment of one model, with its recording's length.
-- Variables: model, recording_id, segment_index.
SELECT s.model, s.recording_id, s.segment_index, s.uri, s.start_s, s.end_s, s.labels, s.confidences,
    s.detected, s.audioset_labels, s.audioset_scores, s.run_id, r.duration_s AS recording_s
FROM segments AS s
JOIN recordings AS r USING (model, uri, recording_id, run_id)
WHERE s.model = getvariable('model') AND s.recording_id = getvariable('recording_id')
    AND s.segment_index = getvariable('segment_index')
LIMIT 1;
