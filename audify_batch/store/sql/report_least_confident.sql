-- Run report: review queue: the n least confident segments.
-- Variables: model, n.
SELECT uri, start_s, end_s, labels[1] AS label, confidences[1] AS confidence
    FROM segments WHERE model = getvariable('model')
    ORDER BY confidence, uri, start_s LIMIT getvariable('n');
