-- Review desk (audify serve): the segments of one model that pass the filters, one page of them.
-- Every filter is optional (NULL: not applied):
--     model                    required
--     label                    the top ESC-50 label (labels[1])
--     detected                 a detected label (the `detections` view: top-1 for models without thresholds)
--     audioset                 the top AudioSet label
--     min_score, max_score     range of the top ESC-50 confidence (confidences[1])
--     uri                      part of the recording's uri (a plain substring, no wildcards)
--     min_start_s, max_start_s range of the segment's start in its recording
--     run_id                   the run that labeled it
--     limit, offset            the page
-- n_total: how many segments pass the filters; reviewed: verdicts on the segment that count.
WITH chosen AS (
    SELECT recording_id, segment_index, uri, start_s, end_s, labels[1] AS label, confidences[1] AS score,
        coalesce(detected, labels[1:1]) AS detected, audioset_labels[1] AS audioset,
        audioset_scores[1] AS audioset_score, run_id
    FROM segments
    WHERE model = coalesce(getvariable('model'), error('app_segments.sql: SET VARIABLE model first'))
        AND (getvariable('label') IS NULL OR labels[1] = getvariable('label'))
        AND (getvariable('detected') IS NULL
            OR list_contains(coalesce(detected, labels[1:1]), getvariable('detected')))
        AND (getvariable('audioset') IS NULL OR audioset_labels[1] = getvariable('audioset'))
        AND (getvariable('min_score') IS NULL OR confidences[1] >= getvariable('min_score'))
        AND (getvariable('max_score') IS NULL OR confidences[1] <= getvariable('max_score'))
        AND (getvariable('uri') IS NULL OR contains(uri, getvariable('uri')))
        AND (getvariable('min_start_s') IS NULL OR start_s >= getvariable('min_start_s'))
        AND (getvariable('max_start_s') IS NULL OR start_s <= getvariable('max_start_s'))
        AND (getvariable('run_id') IS NULL OR run_id = getvariable('run_id'))
), page AS (
    SELECT *, count(*) OVER () AS n_total FROM chosen
    ORDER BY uri, segment_index
    LIMIT getvariable('limit') OFFSET getvariable('offset')
)
SELECT p.*, (SELECT count(*) FROM annotations AS a
        WHERE a.model = getvariable('model') AND a.recording_id = p.recording_id
            AND a.segment_index = p.segment_index) AS reviewed
FROM page AS p
ORDER BY uri, segment_index;
