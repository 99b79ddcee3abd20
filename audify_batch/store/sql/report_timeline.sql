-- Run report: top label over time of recording uri.
-- Variables: model, uri.
SELECT start_s, end_s, labels[1], confidences[1] FROM segments
    WHERE model = getvariable('model') AND uri = getvariable('uri') ORDER BY start_s;
