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
--     head                     a custom head: only the segments it scored (the head_scores view)
--     min_head_score           with head: its score at least this
--     limit, offset            the page
-- n_total: how many segments pass the filters; reviewed: verdicts on the segment (its span) that count;
-- head_score: the head's score (NULL without head). With a head, the highest scores come first.
WITH chosen AS (
    SELECT s.recording_id, s.segment_index, s.uri, s.start_s, s.end_s, labels[1] AS label,
        confidences[1] AS score, coalesce(detected, labels[1:1]) AS detected, audioset_labels[1] AS audioset,
        audioset_scores[1] AS audioset_score, s.run_id, h.score::DOUBLE AS head_score
    FROM segments AS s
    LEFT JOIN (
        FROM head_scores WHERE model = getvariable('model') AND head = getvariable('head')
    ) AS h ON h.recording_id = s.recording_id AND h.segment_index = s.segment_index
    WHERE s.model = coalesce(getvariable('model'), error('app_segments.sql: SET VARIABLE model first'))
        AND (getvariable('label') IS NULL OR labels[1] = getvariable('label'))
        AND (getvariable('detected') IS NULL
            OR list_contains(coalesce(detected, labels[1:1]), getvariable('detected')))
        AND (getvariable('audioset') IS NULL OR audioset_labels[1] = getvariable('audioset'))
        AND (getvariable('min_score') IS NULL OR confidences[1] >= getvariable('min_score'))
        AND (getvariable('max_score') IS NULL OR confidences[1] <= getvariable('max_score'))
        AND (getvariable('uri') IS NULL OR contains(s.uri, getvariable('uri')))
        AND (getvariable('min_start_s') IS NULL OR s.start_s >= getvariable('min_start_s'))
        AND (getvariable('max_start_s') IS NULL OR s.start_s <= getvariable('max_start_s'))
        AND (getvariable('run_id') IS NULL OR s.run_id = getvariable('run_id'))
        AND (getvariable('head') IS NULL OR h.score IS NOT NULL)
        AND (getvariable('min_head_score') IS NULL OR h.score >= getvariable('min_head_score'))
), page AS (
    SELECT *, count(*) OVER () AS n_total FROM chosen
    ORDER BY head_score DESC NULLS LAST, uri, segment_index
    LIMIT getvariable('limit') OFFSET getvariable('offset')
)
SELECT p.*, (SELECT count(*) FROM annotations AS a
        WHERE a.model = getvariable('model') AND a.recording_id = p.recording_id
            AND a.segment_index = p.segment_index AND same_span(a.start_s, p.start_s)) AS reviewed
FROM page AS p
ORDER BY head_score DESC NULLS LAST, uri, segment_index;
