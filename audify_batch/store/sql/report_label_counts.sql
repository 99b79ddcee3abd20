-- Run report: top-1 label counts over the archive, one model.
-- Variables: model.
SELECT labels[1] AS label, count(*) AS n FROM segments
    WHERE model = getvariable('model') GROUP BY ALL ORDER BY n DESC, label;
