-- The segments most similar to one segment, by cosine similarity of embeddings, within the same
-- model only (the query segment itself excluded).
-- Parameters (DuckDB variables):
--     uri            required: the query segment's recording
--     segment_index  required
--     limit          optional: how many per model, default 10 (SET VARIABLE "limit" = 20; quoted)
--     model          optional: only this model; NULL = every model that has the segment, each
--                    searched among its own segments (give it when the models' embedding
--                    lengths differ: see views.sql)
-- CLI: SET VARIABLE uri = 'file:///archive/a.wav'; SET VARIABLE segment_index = 3;
--      .read sql/similar_segments.sql
WITH query_segment AS (
    SELECT model, uri, segment_index, embedding
    FROM embeddings
    WHERE uri = coalesce(getvariable('uri'), error('similar_segments.sql: SET VARIABLE uri = ''...''; first'))
        AND segment_index = coalesce(
            getvariable('segment_index'), error('similar_segments.sql: SET VARIABLE segment_index = ...; first'))
        AND (getvariable('model') IS NULL OR model = getvariable('model'))
)
SELECT
    s.model,
    row_number() OVER (
        PARTITION BY s.model ORDER BY array_cosine_similarity(s.embedding, q.embedding) DESC, s.uri, s.segment_index
    ) AS position,
    s.uri,
    s.segment_index,
    s.start_s,
    s.end_s,
    s.labels[1] AS label,
    s.confidences[1] AS confidence,
    array_cosine_similarity(s.embedding, q.embedding) AS similarity
FROM query_segment AS q
JOIN segments AS s
    ON s.model = q.model AND NOT (s.uri = q.uri AND s.segment_index = q.segment_index)
WHERE getvariable('model') IS NULL OR s.model = getvariable('model')
QUALIFY position <= coalesce(getvariable('limit'), 10)
ORDER BY s.model, position;
