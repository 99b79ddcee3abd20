-- Run report: detected label counts of the recordings in the list uris.
-- Variables: model, uris.
SELECT uri, label, count(*) AS n FROM detections
    WHERE model = getvariable('model') AND list_contains(getvariable('uris'), uri)
    GROUP BY ALL;
