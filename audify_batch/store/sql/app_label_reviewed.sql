-- Review desk (audify serve): the segments of one model with a verdict on one label (any verdict),
-- given for the segment's current span (a verdict on an older run's window of the same index is
-- about other audio: that segment is not reviewed).
-- Variables: model, label.
SELECT a.segment_id
FROM annotations AS a
SEMI JOIN segments AS s
    ON s.model = a.model AND s.recording_id = a.recording_id AND s.segment_index = a.segment_index
    AND same_span(a.start_s, s.start_s)
WHERE a.model = getvariable('model') AND a.label = getvariable('label');
