-- The timeline of one recording: each segment with what is detected there (empty: nothing known;
-- NULL: a model without thresholds), its top label and the top 3, and the top AudioSet label.
-- Parameters (DuckDB variables):
--     uri    required
--     model  optional: only this model; NULL = every model that labeled the recording, one after another
-- CLI: SET VARIABLE uri = 'file:///archive/a.wav'; .read sql/timeline.sql
SELECT
    model,
    segment_index,
    start_s,
    end_s,
    detected,
    labels[1] AS label,
    confidences[1] AS confidence,
    labels[1:3] AS top3_labels,
    confidences[1:3] AS top3_confidences,
    audioset_labels[1] AS audioset_label,
    audioset_scores[1] AS audioset_score
FROM segments
WHERE uri = coalesce(getvariable('uri'), error('timeline.sql: SET VARIABLE uri = ''...''; first'))
    AND (getvariable('model') IS NULL OR model = getvariable('model'))
ORDER BY model, segment_index;
