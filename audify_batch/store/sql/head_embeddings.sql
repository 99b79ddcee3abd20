-- Custom heads (`audify head train`): the embeddings of some current segments of one model, ordered
-- by (recording_id, segment_index).
-- Variables: model, recording_ids (VARCHAR[]) and segment_indexes (INTEGER[]), one pair per segment.
WITH wanted AS (
    SELECT unnest(getvariable('recording_ids')) AS recording_id,
        unnest(getvariable('segment_indexes'))::INTEGER AS segment_index
)
SELECT e.recording_id, e.segment_index, e.embedding
FROM embeddings AS e
SEMI JOIN wanted AS w ON w.recording_id = e.recording_id AND w.segment_index = e.segment_index
WHERE e.model = getvariable('model')
ORDER BY e.recording_id, e.segment_index;
