-- Run report: recordings by segment count.
-- Variables: model.
SELECT uri, count(*) AS n FROM segments WHERE model = getvariable('model')
    GROUP BY uri ORDER BY n DESC, uri;
