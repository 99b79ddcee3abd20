-- Run report: every run of one model, newest first.
-- Variables: model.
SELECT run_id, started_at, status, n_recordings, n_labeled, n_skipped, n_failed, n_segments,
     round(audio_s / 3600, 3) AS audio_h, round(wall_s, 1) AS wall_s,
     round(audio_s / nullif(wall_s, 0), 1) AS realtime_x
    FROM runs WHERE model = getvariable('model') ORDER BY started_at DESC, run_id DESC;
