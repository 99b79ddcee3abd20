-- Run report: segments per detected label over the archive, one model (a model without thresholds:
-- its top-1 label).
-- Variables: model.
SELECT label, count(*) AS n FROM detections
    WHERE model = getvariable('model') GROUP BY ALL ORDER BY n DESC, label;
