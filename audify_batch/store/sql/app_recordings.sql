-- Review desk (audify serve): the current recordings of one model, by uri, one page of them.
-- Variables: model, limit, offset. n_total: how many there are in all.
SELECT recording_id, uri, status, duration_s, n_segments, error, count(*) OVER () AS n_total
FROM recordings
WHERE model = getvariable('model')
ORDER BY uri
LIMIT getvariable('limit') OFFSET getvariable('offset');
