-- Review desk (audify serve): the custom heads' scores of one segment of one model (head_scores view).
-- Variables: model, recording_id, segment_index.
SELECT head, score::DOUBLE AS score
FROM head_scores
WHERE model = getvariable('model') AND recording_id = getvariable('recording_id')
    AND segment_index = getvariable('segment_index')
ORDER BY head;
