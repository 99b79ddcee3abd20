-- audify-batch: the `head_scores` view, custom heads' scores (`audify head apply`), over OUT/head_scores/.
-- Read it after views.sql (it uses the variable audify_out that views.sql sets):
--     duckdb -c "SET VARIABLE out = '/path/to/OUT'" -c ".read sql/views.sql" -c ".read sql/head_scores.sql"
-- From Python: audify_batch.review.heads.connect_with_heads(out).
--
--     head_scores   one row per segment a custom head scored: model, recording_id, segment_index, uri,
--                   start_s, end_s, run_id (of the segments row scored), head, score, head_version
--
-- An apply writes OUT/head_scores/head=<NAME>/part-<apply_id>-<seq>.parquet, then the marker
-- commit-<apply_id>.json, then removes the files of older applies of that head: only the latest
-- committed apply of each head shows, so a reader never sees two applies mixed or a half-written
-- one. As with views.sql, read this file again once OUT has head scores for the first time.
SET VARIABLE audify_has_head_scores = (
    SELECT count(*) > 0 FROM glob(getvariable('audify_out') || '/head_scores/head=*/part-*.parquet')
);

SET VARIABLE audify_head_scores_sql = CASE WHEN getvariable('audify_has_head_scores') THEN
    $$SELECT model, recording_id, segment_index, uri, start_s, end_s, run_id, head, score, head_version
    FROM read_parquet(getvariable('audify_out') || '/head_scores/head=*/part-*.parquet',
        hive_partitioning = false, filename = true)
    WHERE filename IN (
        SELECT p.file
        FROM glob(getvariable('audify_out') || '/head_scores/head=*/part-*.parquet') AS p
        JOIN (
            SELECT regexp_extract(file, '/head=([^/]+)/commit-', 1) AS folder,
                max(regexp_extract(file, '/commit-([^/]+)\.json$', 1)) AS apply_id
            FROM glob(getvariable('audify_out') || '/head_scores/head=*/commit-*.json')
            GROUP BY folder
        ) AS c
            ON regexp_extract(p.file, '/head=([^/]+)/part-', 1) = c.folder
            AND regexp_extract(p.file, '/part-([^/]+)-[0-9]+\.parquet$', 1) = c.apply_id)$$
ELSE
    $$SELECT NULL::VARCHAR AS model, NULL::VARCHAR AS recording_id, NULL::INTEGER AS segment_index,
        NULL::VARCHAR AS uri, NULL::DOUBLE AS start_s, NULL::DOUBLE AS end_s, NULL::VARCHAR AS run_id,
        NULL::VARCHAR AS head, NULL::FLOAT AS score, NULL::VARCHAR AS head_version
    WHERE false$$
END;

CREATE OR REPLACE VIEW head_scores AS FROM query(getvariable('audify_head_scores_sql'));
