-- Custom heads (`audify head train`): the training segments of one label in one model, without
-- embeddings, ordered by (recording_id, segment_index). Reviewed: every current segment whose
-- latest verdict on the label (the annotations view) is about its span, with that verdict's id
-- (`present` true or false). Presumed negative (annotation_id NULL): current segments without a
-- verdict on the label, drawn in an order fixed by `seed`, `presumed_per_positive` per present
-- verdict and at most `max_presumed`.
-- Variables: model, label, presumed_per_positive, max_presumed, seed.
WITH verdicts AS (
    SELECT recording_id, segment_index, start_s, verdict = 'present' AS present, annotation_id
    FROM annotations
    WHERE model = getvariable('model') AND label = getvariable('label')
),
current AS (
    SELECT recording_id, segment_index, start_s, model_name, model_version
    FROM segments
    WHERE model = getvariable('model')
),
reviewed AS (
    SELECT c.recording_id, c.segment_index, v.present, v.annotation_id, c.model_name, c.model_version
    FROM verdicts AS v
    JOIN current AS c
        ON c.recording_id = v.recording_id AND c.segment_index = v.segment_index
        AND same_span(v.start_s, c.start_s)
),
presumed AS (
    SELECT c.recording_id, c.segment_index, false AS present, NULL::VARCHAR AS annotation_id,
        c.model_name, c.model_version,
        row_number() OVER (
            ORDER BY hash(c.recording_id, c.segment_index, getvariable('seed')), c.recording_id, c.segment_index
        ) AS draw
    FROM current AS c
    ANTI JOIN (
        FROM annotations WHERE model = getvariable('model') AND label = getvariable('label')
    ) AS a ON a.recording_id = c.recording_id AND a.segment_index = c.segment_index
)
SELECT * FROM (
    FROM reviewed
    UNION ALL
    SELECT * EXCLUDE (draw) FROM presumed
    WHERE draw <= (
        SELECT least(count(*) * getvariable('presumed_per_positive'), getvariable('max_presumed'))
        FROM reviewed WHERE present
    )
)
ORDER BY recording_id, segment_index;
