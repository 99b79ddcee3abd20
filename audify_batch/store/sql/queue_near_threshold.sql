-- Review queue (the review desk), for models with per-class thresholds: the calls nearest their
-- class threshold, detected or just missed. Candidates are the segments' top-K labels that have a
-- threshold; `margin` is score minus threshold (>= 0: detected), and each segment shows once, with
-- its closest call. Calls already given a verdict are left out.
-- Variables: model, n, threshold_labels (VARCHAR[]), threshold_values (DOUBLE[], one per label).
WITH thresholds AS (
    SELECT unnest(getvariable('threshold_labels')) AS label,
        unnest(getvariable('threshold_values'))::DOUBLE AS threshold
),
calls AS (
    SELECT l.recording_id, l.segment_index, l.uri, l.start_s, l.end_s, l.label,
        l.confidence::DOUBLE AS score, l.confidence - t.threshold AS margin
    FROM labels AS l
    JOIN thresholds AS t USING (label)
    WHERE l.model = getvariable('model')
)
SELECT c.recording_id || ':' || c.segment_index AS segment_id, c.uri, c.start_s, c.end_s, c.label, c.score,
    c.margin
FROM calls AS c
ANTI JOIN (FROM annotations WHERE model = getvariable('model')) AS a
    ON a.recording_id = c.recording_id AND a.segment_index = c.segment_index AND a.label = c.label
    AND same_span(a.start_s, c.start_s)
QUALIFY row_number() OVER (PARTITION BY c.recording_id, c.segment_index ORDER BY abs(c.margin), c.label) = 1
ORDER BY abs(c.margin), c.uri, c.start_s, c.label
LIMIT getvariable('n');
