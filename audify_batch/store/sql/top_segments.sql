-- The most confident segments for one label, among each segment's top-K labels (any rank).
-- Parameters (DuckDB variables):
--     label  required
--     limit  optional: how many per model, default 10 (LIMIT is a keyword: SET VARIABLE "limit" = 20;)
--     model  optional: only this model; NULL = the best `limit` of every model, ranked within its model
-- CLI: SET VARIABLE label = 'dog'; SET VARIABLE "limit" = 20; .read sql/top_segments.sql
SELECT
    model,
    row_number() OVER (PARTITION BY model ORDER BY confidence DESC, uri, segment_index) AS position,
    uri,
    segment_index,
    start_s,
    end_s,
    label,
    confidence,
    rank
FROM labels
WHERE label = coalesce(getvariable('label'), error('top_segments.sql: SET VARIABLE label = ''...''; first'))
    AND (getvariable('model') IS NULL OR model = getvariable('model'))
QUALIFY position <= coalesce(getvariable('limit'), 10)
ORDER BY model, position;
