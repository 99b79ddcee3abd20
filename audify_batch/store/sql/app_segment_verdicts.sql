-- Review desk (audify serve): the verdicts that count on one segment of one model (the latest per
-- label), with how many were given for each label.
-- Variables: model, segment_id ('RECORDING_ID:SEGMENT_INDEX').
SELECT label, verdict, annotator, annotated_at, n_verdicts
FROM annotations
WHERE model = getvariable('model') AND segment_id = getvariable('segment_id')
ORDER BY annotated_at DESC, label;
