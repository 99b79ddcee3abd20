-- Run report: histogram of top-1 confidence in 40 bins.
-- Variables: model.
SELECT least(floor(confidences[1] * 40), 39)::INT AS bin, count(*) AS n
    FROM segments WHERE model = getvariable('model') GROUP BY bin ORDER BY bin;
