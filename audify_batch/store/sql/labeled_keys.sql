-- The recordings a run skips when unchanged: current (the `recordings` view of views.sql, the one
-- definition of a recording's current state) and labeled with the run's settings. The writer runs this
-- before each labeling run (ParquetSink.labeled_keys) and skips a recording whose uri, size_bytes and
-- mtime_s still match what the run finds, and then its content fingerprint too.
-- Parameters (DuckDB variables; both needed, an unset one matches nothing):
--     model        '<name>-<version>', the model partition of the run (prunes the other models' files)
--     config_hash  the run's config hash (runs.config_hash)
-- CLI: SET VARIABLE model = 'audify-esc50-resnet-1.0.0'; SET VARIABLE config_hash = '...';
--      .read sql/labeled_keys.sql   (after sql/views.sql)
SELECT uri, size_bytes, mtime_s, fingerprint
FROM recordings
WHERE model = getvariable('model')
    AND config_hash = getvariable('config_hash')
    AND status IN ('labeled', 'partial')  -- partial (cut short): reading it again gives the same
ORDER BY uri;
