-- Run report: top-1 label counts of the recordings in the list uris.
-- Variables: model, uris.
SELECT uri, labels[1] AS label, count(*) AS n FROM segments
    WHERE model = getvariable('model') AND list_contains(getvariable('uris'), uri)
    GROUP BY ALL;
