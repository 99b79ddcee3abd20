-- Run report: what is detected over time in recording uri (a model without thresholds: its top-1
-- label); a segment where nothing known is heard has no row.
-- Variables: model, uri.
SELECT start_s, end_s, label, coalesce(confidence, 0.0) FROM detections
    WHERE model = getvariable('model') AND uri = getvariable('uri') ORDER BY start_s, label;
