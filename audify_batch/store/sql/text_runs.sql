-- Text report section: Runs.
SELECT model, run_id, started_at, status, n_recordings, n_labeled, n_failed, n_skipped,
        n_segments, audio_s, wall_s
    FROM runs ORDER BY model, started_at, run_id;
