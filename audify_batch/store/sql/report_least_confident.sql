-- Run report: review queue: the n least confident segments; segment_id is what
-- `audify explain OUT --segment ID` takes (RECORDING_ID:SEGMENT_INDEX).
-- Variables: model, n.
SELECT recording_id || ':' || segment_index AS segment_id, uri, start_s, end_s,
      labels[1] AS label, confidences[1] AS confidence
    FROM segments WHERE model = getvariable('model')
    ORDER BY confidence, uri, start_s LIMIT getvariable('n');
