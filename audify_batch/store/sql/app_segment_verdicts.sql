-- Review desk (audify serve): the verdicts that count on one segment of one model (the latest per
-- label), with how many were given for each label; only verdicts given for the segment's current
-- span (after a relabel with other windows, the same index covers other audio).
-- Variables: model, segment_id ('RECORDING_ID:SEGMENT_INDEX').
SELECT a.label, a.verdict, a.annotator, a.annotated_at, a.n_verdicts
FROM annotations AS a
SEMI JOIN segments AS s
    ON s.model = a.model AND s.recording_id = a.recording_id AND s.segment_index = a.segment_index
    AND same_span(a.start_s, s.start_s)
WHERE a.model = getvariable('model') AND a.segment_id = getvariable('segment_id')
ORDER BY a.annotated_at DESC, a.label;
