-- audify-batch: DuckDB views over the Parquet output folder OUT of `audify label`.
--
-- From the plain duckdb CLI (run from the repository root, or give the full path to .read):
--
--     SET VARIABLE out = '/path/to/OUT';   -- a local folder, or e.g. 's3://bucket/prefix' once httpfs is set up
--     SET VARIABLE embedding_dim = 512;    -- optional: default is the length of the first stored embedding
--     .read sql/views.sql
--     FROM recordings WHERE status = 'failed';
--     SET VARIABLE uri = 'file:///archive/a.wav';
--     .read sql/events.sql
--
-- or in one line:  duckdb -c "SET VARIABLE out = '/path/to/OUT'" -c ".read sql/views.sql" -c "FROM runs"
-- Report queries take their parameters as variables too (SET VARIABLE name = NULL; unsets one);
-- `limit` is a keyword, so quote it there: SET VARIABLE "limit" = 20;
--
-- From Python: audify_batch.query.connect(out) sets the same variables and runs this file.
--
-- Views (every one carries the `model` column, '<name>-<version>' from the model=... folder; models
-- are never mixed, so filter on it or group by it):
--     runs               one row per finished run (runs/model=*/run-*.parquet)
--     recording_history  every recordings row of every run: labeled, partial, failed and skipped
--     recordings         the current state per (model, uri): its latest labeled-or-failed row by
--                        finished_at (ties: the larger run_id), plus last_seen_at over all its rows;
--                        a labeled row whose committed segments are fewer than its n_segments is skipped
--     segments           the segments of the current labeled recordings, embedding as FLOAT[D]
--     labels             one row per segment and top-K label, rank 1..K
--     detections         one row per segment and detected label (top-1 for models without thresholds)
--     audioset_labels    one row per segment and top-K AudioSet label (models with that head)
--     embeddings         recording_id, uri, segment_index, model, embedding FLOAT[D]
--     annotation_history every reviewer verdict (annotations/part-*.parquet, append-only)
--     annotations        the latest verdict per (model, recording_id, segment_index, label), with
--                        segment_id 'RECORDING_ID:SEGMENT_INDEX'; verdict 'present' or 'absent'
--     head_scores        one row per segment a custom head scored (the latest committed apply of
--                        each head): model, recording_id, segment_index, uri, start_s, end_s, run_id,
--                        head, score, head_version
--
-- Only committed rows show: a segments row counts only when the recordings part of the same file
-- name exists and holds the current labeled row of its recording (same model, uri, recording_id and
-- run_id). Debris of a killed run (a segments part without its recordings part) and superseded
-- segments (from older runs of a relabeled recording) never show.
--
-- How it works, and what to know:
-- * The views read the files each time they are queried, so new runs show up without re-reading
--   this file. What this file decides once, when it runs, is which datasets exist and D: re-read it
--   after changing `out`, or when OUT had no segments yet and has some now.
-- * Parquet stores the arrow fixed_size_list embedding as a plain list; a cast to FLOAT[D] needs D
--   as a literal, so the base views are built with query() from SQL text that contains D (only
--   that integer is pasted; the path stays a getvariable() call inside that text).
-- * One D for all models: rows of a model whose embeddings have another length raise a clear
--   error when their embedding is read (labels, events, counts still work). Re-read this file with
--   SET VARIABLE embedding_dim = <that length> to query that model's embeddings.
-- * A dataset with no files yet (no segments when every recording failed, for instance) gives an
--   empty view of the same columns (embedding then FLOAT[embedding_dim], FLOAT[1] when unknown).
--   An OUT with no runs, recordings or segments at all is an error (a wrong path, most likely).
-- * Internal state lives in variables named audify_*; internal views are named audify_*.

SET VARIABLE audify_out = coalesce(
    rtrim(getvariable('out'), '/'),
    error('audify views: SET VARIABLE out = ''/path/to/OUT''; before reading views.sql')
);

SET VARIABLE audify_has_runs = (
    SELECT count(*) > 0 FROM glob(getvariable('audify_out') || '/runs/model=*/run-*.parquet')
);
SET VARIABLE audify_has_recordings = (
    SELECT count(*) > 0 FROM glob(getvariable('audify_out') || '/recordings/model=*/part-*.parquet')
);
SET VARIABLE audify_has_segments = (
    SELECT count(*) > 0 FROM glob(getvariable('audify_out') || '/segments/model=*/part-*.parquet')
);
SET VARIABLE audify_has_annotations = (
    SELECT count(*) > 0 FROM glob(getvariable('audify_out') || '/annotations/part-*.parquet')
);
SET VARIABLE audify_checked = CASE
    WHEN getvariable('audify_has_runs') OR getvariable('audify_has_recordings') OR getvariable('audify_has_segments')
        THEN true
    ELSE error('audify views: no output under ''' || getvariable('audify_out')
        || ''' (expected runs/, recordings/ and segments/ folders with model=<name>-<version> partitions)')
END;

-- Segments parts written before `detected` and the AudioSet columns existed (audify-batch < 0.2) lack
-- them. Where a committed part lacks them, the segments are read by name from the list of committed
-- parts as of now (union_by_name reads every listed file's footer, so debris must not be listed):
-- re-read this file to see later runs. Otherwise the glob is read, and new runs show up by themselves.
SET VARIABLE audify_committed_segments = (
    SELECT coalesce(list(file ORDER BY file), []::VARCHAR[])
    FROM glob(getvariable('audify_out') || '/segments/model=*/part-*.parquet')
    WHERE replace(file, getvariable('audify_out') || '/segments/', getvariable('audify_out') || '/recordings/')
        IN (SELECT file FROM glob(getvariable('audify_out') || '/recordings/model=*/part-*.parquet'))
);
SET VARIABLE audify_legacy_segments = (FROM query(CASE WHEN len(getvariable('audify_committed_segments')) > 0
    THEN $$SELECT count(*) > 0 FROM (
            SELECT file_name FROM parquet_schema(getvariable('audify_committed_segments'))
            GROUP BY file_name HAVING NOT bool_or(name = 'detected'))$$
    ELSE 'SELECT false' END));

SET VARIABLE audify_embedding_dim = coalesce(
    getvariable('embedding_dim')::INTEGER,
    (FROM query(CASE WHEN getvariable('embedding_dim') IS NULL AND len(getvariable('audify_committed_segments')) > 0
        THEN $$SELECT len(embedding)::INTEGER FROM read_parquet(
                   getvariable('audify_committed_segments')[1]) LIMIT 1$$
        ELSE 'SELECT NULL::INTEGER' END)),
    1
);

-- Raw rows of each dataset, with `model` from the folder name and `part` the file name.
-- Segments are read only where a committed segments part exists: DuckDB binds a glob on its first
-- file, which must never be debris (a broken one fails), as when a run's recordings all failed.
SET VARIABLE audify_segments_sql = CASE WHEN len(getvariable('audify_committed_segments')) > 0 THEN
    $$SELECT recording_id, uri, segment_index, start_s, end_s, start_sample, end_sample, labels, confidences,
        CASE WHEN len(embedding) = $$ || getvariable('audify_embedding_dim') || $$
            THEN embedding::FLOAT[$$ || getvariable('audify_embedding_dim') || $$]
            ELSE error('audify views: model ' || model || ' has embeddings of length ' || len(embedding)
                || ', the views were created for $$ || getvariable('audify_embedding_dim') || $$; '
                || 'SET VARIABLE embedding_dim = ' || len(embedding) || '; and read views.sql again')
        END AS embedding,
        detected, audioset_labels, audioset_scores,
        model_name, model_version, config_hash, run_id, model, parse_filename(filename) AS part
    FROM read_parquet($$ || CASE WHEN getvariable('audify_legacy_segments')
            THEN $$getvariable('audify_committed_segments'), union_by_name = true,$$
            ELSE $$getvariable('audify_out') || '/segments/model=*/part-*.parquet',$$ END || $$
        hive_partitioning = true, hive_types = {'model': 'VARCHAR'}, filename = true)$$
ELSE
    $$SELECT NULL::VARCHAR AS recording_id, NULL::VARCHAR AS uri, NULL::INTEGER AS segment_index,
        NULL::DOUBLE AS start_s, NULL::DOUBLE AS end_s, NULL::BIGINT AS start_sample, NULL::BIGINT AS end_sample,
        NULL::VARCHAR[] AS labels, NULL::FLOAT[] AS confidences,
        NULL::FLOAT[$$ || getvariable('audify_embedding_dim') || $$] AS embedding,
        NULL::VARCHAR[] AS detected, NULL::VARCHAR[] AS audioset_labels, NULL::FLOAT[] AS audioset_scores,
        NULL::VARCHAR AS model_name, NULL::VARCHAR AS model_version, NULL::VARCHAR AS config_hash,
        NULL::VARCHAR AS run_id, NULL::VARCHAR AS model, NULL::VARCHAR AS part
    WHERE false$$
END;

SET VARIABLE audify_recordings_sql = CASE WHEN getvariable('audify_has_recordings') THEN
    $$SELECT recording_id, uri, size_bytes, mtime_s, fingerprint, sample_rate_hz, channels, duration_s,
        n_segments, status, error, model_name, model_version, config_hash, run_id, finished_at,
        model, parse_filename(filename) AS part
    FROM read_parquet(getvariable('audify_out') || '/recordings/model=*/part-*.parquet',
        hive_partitioning = true, hive_types = {'model': 'VARCHAR'}, filename = true)$$
ELSE
    $$SELECT NULL::VARCHAR AS recording_id, NULL::VARCHAR AS uri, NULL::BIGINT AS size_bytes,
        NULL::DOUBLE AS mtime_s, NULL::VARCHAR AS fingerprint, NULL::INTEGER AS sample_rate_hz,
        NULL::INTEGER AS channels, NULL::DOUBLE AS duration_s, NULL::INTEGER AS n_segments,
        NULL::VARCHAR AS status, NULL::VARCHAR AS error, NULL::VARCHAR AS model_name,
        NULL::VARCHAR AS model_version, NULL::VARCHAR AS config_hash, NULL::VARCHAR AS run_id,
        NULL::TIMESTAMPTZ AS finished_at, NULL::VARCHAR AS model, NULL::VARCHAR AS part
    WHERE false$$
END;

SET VARIABLE audify_runs_sql = CASE WHEN getvariable('audify_has_runs') THEN
    $$SELECT run_id, started_at, finished_at, status, config_json, config_hash, model_name, model_version,
        n_recordings, n_labeled, n_failed, n_skipped, n_segments, audio_s, wall_s, model
    FROM read_parquet(getvariable('audify_out') || '/runs/model=*/run-*.parquet',
        hive_partitioning = true, hive_types = {'model': 'VARCHAR'})$$
ELSE
    $$SELECT NULL::VARCHAR AS run_id, NULL::TIMESTAMPTZ AS started_at, NULL::TIMESTAMPTZ AS finished_at,
        NULL::VARCHAR AS status, NULL::VARCHAR AS config_json, NULL::VARCHAR AS config_hash,
        NULL::VARCHAR AS model_name, NULL::VARCHAR AS model_version, NULL::BIGINT AS n_recordings,
        NULL::BIGINT AS n_labeled, NULL::BIGINT AS n_failed, NULL::BIGINT AS n_skipped,
        NULL::BIGINT AS n_segments, NULL::DOUBLE AS audio_s, NULL::DOUBLE AS wall_s, NULL::VARCHAR AS model
    WHERE false$$
END;

CREATE OR REPLACE VIEW audify_segment_rows AS FROM query(getvariable('audify_segments_sql'));
CREATE OR REPLACE VIEW audify_recording_rows AS FROM query(getvariable('audify_recordings_sql'));

-- A run writes a new row file per state (running, then completed or failed): the latest counts.
CREATE OR REPLACE VIEW runs AS
FROM query(getvariable('audify_runs_sql'))
QUALIFY row_number() OVER (
    PARTITION BY model, run_id ORDER BY status <> 'running' DESC, finished_at DESC NULLS LAST
) = 1;

CREATE OR REPLACE VIEW recording_history AS
SELECT model, uri, recording_id, run_id, status, error, n_segments, duration_s, sample_rate_hz, channels,
    size_bytes, mtime_s, fingerprint, finished_at, model_name, model_version, config_hash, part
FROM audify_recording_rows;

-- Segments rows per committing recordings row (model, uri, recording_id, run_id and part name), read
-- only from segments parts that have their recordings part (the filter on filename prunes the other
-- files unopened: debris of a killed run is never read here, even a broken one).
SET VARIABLE audify_segment_counts_sql = CASE WHEN len(getvariable('audify_committed_segments')) > 0 THEN
    $$SELECT model, uri, recording_id, run_id, parse_filename(filename) AS part
    FROM read_parquet(getvariable('audify_out') || '/segments/model=*/part-*.parquet',
        hive_partitioning = true, hive_types = {'model': 'VARCHAR'}, filename = true)
    WHERE filename IN (
        SELECT replace(file, getvariable('audify_out') || '/recordings/', getvariable('audify_out') || '/segments/')
        FROM glob(getvariable('audify_out') || '/recordings/model=*/part-*.parquet'))$$
ELSE
    $$SELECT NULL::VARCHAR AS model, NULL::VARCHAR AS uri, NULL::VARCHAR AS recording_id,
        NULL::VARCHAR AS run_id, NULL::VARCHAR AS part
    WHERE false$$
END;

CREATE OR REPLACE VIEW audify_segment_counts AS
SELECT model, uri, recording_id, run_id, part, count(*) AS n_rows
FROM query(getvariable('audify_segment_counts_sql'))
GROUP BY ALL;

-- The one definition of "current": the writer's skip query (labeled_keys.sql, run before each labeling
-- run) reads this view too, so what a run skips is exactly what this view calls current and labeled.
-- A labeled row counts only when its segments part holds all its n_segments rows: a row whose
-- segments were lost (removed by a concurrent clean-up before runs took the lease on OUT) is no
-- commit, so the recording falls back to its previous state and the next run labels it again.
CREATE OR REPLACE VIEW recordings AS
WITH seen AS (
    SELECT *, max(finished_at) OVER (PARTITION BY model, uri) AS last_seen_at
    FROM recording_history
)
SELECT seen.* FROM seen
LEFT JOIN audify_segment_counts AS c USING (model, uri, recording_id, run_id, part)
WHERE status = 'failed' OR (status IN ('labeled', 'partial') AND (n_segments = 0 OR coalesce(c.n_rows, 0) >= n_segments))
QUALIFY row_number() OVER (PARTITION BY model, uri ORDER BY finished_at DESC, run_id DESC) = 1;

CREATE OR REPLACE VIEW segments AS
SELECT s.model, s.uri, s.recording_id, s.segment_index, s.start_s, s.end_s, s.start_sample, s.end_sample,
    s.labels, s.confidences, s.embedding, s.detected, s.audioset_labels, s.audioset_scores,
    s.run_id, s.model_name, s.model_version, s.config_hash
FROM audify_segment_rows AS s
JOIN recordings AS r
    ON s.model = r.model AND s.uri = r.uri AND s.recording_id = r.recording_id
    AND s.run_id = r.run_id AND s.part = r.part
WHERE r.status IN ('labeled', 'partial');  -- partial: cut short, its readable part labeled

CREATE OR REPLACE VIEW labels AS
SELECT recording_id, uri, segment_index, start_s, end_s,
    generate_subscripts(labels, 1) AS rank,
    unnest(labels) AS label,
    unnest(confidences) AS confidence,
    model
FROM segments;

-- What the model says is there: for a model with per-class thresholds, its `detected` labels (none when
-- nothing known is heard; `known` false); for a 1.x model (no thresholds), its top-1 label.
CREATE OR REPLACE VIEW detections AS
SELECT recording_id, uri, segment_index, start_s, end_s, label, confidences[list_position(labels, label)] AS confidence,
    detected IS NOT NULL AS thresholded, model
FROM (
    SELECT *, unnest(coalesce(detected, labels[1:1])) AS label FROM segments
);

CREATE OR REPLACE VIEW audioset_labels AS
SELECT recording_id, uri, segment_index, start_s, end_s,
    generate_subscripts(audioset_labels, 1) AS rank,
    unnest(audioset_labels) AS label,
    unnest(audioset_scores) AS score,
    model
FROM segments
WHERE audioset_labels IS NOT NULL;

CREATE OR REPLACE VIEW embeddings AS
SELECT recording_id, uri, segment_index, model, embedding
FROM segments;

-- Reviewers' verdicts (store/annotations.py writes them: one file per acknowledged batch, never edited).
SET VARIABLE audify_annotations_sql = CASE WHEN getvariable('audify_has_annotations') THEN
    $$SELECT annotation_id, model, recording_id, segment_index, uri, start_s, end_s, label, verdict,
        annotator, annotated_at
    FROM read_parquet(getvariable('audify_out') || '/annotations/part-*.parquet')$$
ELSE
    $$SELECT NULL::VARCHAR AS annotation_id, NULL::VARCHAR AS model, NULL::VARCHAR AS recording_id,
        NULL::INTEGER AS segment_index, NULL::VARCHAR AS uri, NULL::DOUBLE AS start_s, NULL::DOUBLE AS end_s,
        NULL::VARCHAR AS label, NULL::VARCHAR AS verdict, NULL::VARCHAR AS annotator,
        NULL::TIMESTAMPTZ AS annotated_at
    WHERE false$$
END;

-- Whether a verdict given on a segment starting at `verdict_start_s` is about the segment (of the same
-- recording and index) starting at `segment_start_s`: after a relabel with other windows, the same
-- index covers other audio, and a verdict on the old window is no verdict on the new one.
CREATE OR REPLACE MACRO same_span(verdict_start_s, segment_start_s) AS
    abs(verdict_start_s - segment_start_s) < 1e-6;

CREATE OR REPLACE VIEW annotation_history AS
SELECT *, recording_id || ':' || segment_index AS segment_id
FROM query(getvariable('audify_annotations_sql'));

-- The verdict that counts: the latest per segment and label (ties: the larger annotation_id).
CREATE OR REPLACE VIEW annotations AS
SELECT model, segment_id, recording_id, segment_index, uri, start_s, end_s, label, verdict, annotator,
    annotated_at, annotation_id, count(*) OVER (PARTITION BY model, recording_id, segment_index, label) AS n_verdicts
FROM annotation_history
QUALIFY row_number() OVER (
    PARTITION BY model, recording_id, segment_index, label ORDER BY annotated_at DESC, annotation_id DESC
) = 1;

-- Custom heads' scores (`audify head apply`, review/head_apply.py). An apply writes
-- OUT/head_scores/head=<NAME>/part-<apply_id>-<seq>.parquet, then the marker commit-<apply_id>.json,
-- then removes the files of older applies of that head: only the latest committed apply of each head
-- shows, so a reader never sees two applies mixed or a half-written one.
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

-- Only scores of current rows: a recording labeled again since the apply (same recording_id, new
-- run, maybe other windows) shows no stale scores until the head is applied again.
CREATE OR REPLACE VIEW head_scores AS
SELECT h.*
FROM query(getvariable('audify_head_scores_sql')) AS h
SEMI JOIN recordings AS r ON r.model = h.model AND r.recording_id = h.recording_id AND r.run_id = h.run_id;
