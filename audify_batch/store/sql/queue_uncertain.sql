-- Review queue (the review desk), for models that name one label per segment (no thresholds): the
-- least confident segments, lowest top-1 confidence first. Segments with a verdict on their top-1
-- label are left out.
-- Variables: model, n.
SELECT s.recording_id || ':' || s.segment_index AS segment_id, s.uri, s.start_s, s.end_s,
    s.labels[1] AS label, s.confidences[1]::DOUBLE AS score
FROM segments AS s
ANTI JOIN (FROM annotations WHERE model = getvariable('model')) AS a
    ON a.recording_id = s.recording_id AND a.segment_index = s.segment_index AND a.label = s.labels[1]
    AND same_span(a.start_s, s.start_s)
WHERE s.model = getvariable('model')
ORDER BY score, s.uri, s.start_s
LIMIT getvariable('n');
