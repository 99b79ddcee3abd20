-- Review queue (the review desk): the segments whose two best labels are nearest (smallest gap
-- between the rank-1 and rank-2 confidences). Segments with a verdict on either label are left out.
-- Variables: model, n.
SELECT s.recording_id || ':' || s.segment_index AS segment_id, s.uri, s.start_s, s.end_s,
    s.labels[1] AS label, s.confidences[1]::DOUBLE AS score,
    (s.confidences[1] - s.confidences[2])::DOUBLE AS margin, s.labels[2] AS runner_up
FROM segments AS s
ANTI JOIN (FROM annotations WHERE model = getvariable('model')) AS a
    ON a.recording_id = s.recording_id AND a.segment_index = s.segment_index
    AND a.label IN (s.labels[1], s.labels[2])
    AND same_span(a.start_s, s.start_s)
WHERE s.model = getvariable('model') AND len(s.labels) > 1
ORDER BY margin, s.uri, s.start_s
LIMIT getvariable('n');
