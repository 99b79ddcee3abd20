-- Calibration: each reviewed segment of one label with the score it was given, and whether the
-- reviewer said the label is there. The verdict is the latest one (the annotations view); the
-- segment must still be current with the same span (a relabeled recording's old verdicts, on
-- other windows, do not count).
-- The score is the model's confidence of the label (0 where it is not among the segment's top-K),
-- or, with `head` set, that custom head's score of the same run's row (head_scores view; segments it
-- never scored: none), exactly as stored (a threshold saved from it must not exceed it; the bins round).
-- Variables: model, label, head (NULL: the model's confidences).
WITH reviewed AS (
    SELECT a.segment_id, a.recording_id, a.segment_index, a.verdict = 'present' AS present, s.labels, s.confidences,
        s.run_id
    FROM annotations AS a
    JOIN segments AS s
        ON s.model = a.model AND s.recording_id = a.recording_id AND s.segment_index = a.segment_index
        AND same_span(a.start_s, s.start_s)
    WHERE a.model = getvariable('model') AND a.label = getvariable('label')
)
SELECT r.segment_id, r.present,
    CASE WHEN getvariable('head') IS NULL
        THEN coalesce(r.confidences[list_position(r.labels, getvariable('label'))], 0)::DOUBLE
        ELSE h.score::DOUBLE
    END AS score
FROM reviewed AS r
LEFT JOIN (
    FROM head_scores WHERE model = getvariable('model') AND head = getvariable('head')
) AS h ON h.recording_id = r.recording_id AND h.segment_index = r.segment_index AND h.run_id = r.run_id
WHERE getvariable('head') IS NULL OR h.score IS NOT NULL
ORDER BY score, r.segment_id;
