-- Run report: review queue: the n segments whose top two labels are nearest; segment_id is what
-- `audify explain OUT --segment ID` takes (RECORDING_ID:SEGMENT_INDEX).
-- Variables: model, n.
SELECT recording_id || ':' || segment_index AS segment_id, uri, start_s, end_s,
      labels[1] AS first, labels[2] AS second, confidences[1] - confidences[2] AS margin
    FROM segments WHERE model = getvariable('model') AND len(labels) > 1
    ORDER BY margin, uri, start_s LIMIT getvariable('n');
