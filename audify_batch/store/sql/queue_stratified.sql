-- Review queue (the review desk): a sample of one label's unreviewed segments, stratified over score
-- bins so that calibration sees the whole score range. The score is the model's confidence of the
-- label (0 where it is not among the segment's top-K) or, with `head` set, that custom head's score
-- (head_scores view), rounded to 7 decimals (float32 0.9 is 0.9, in bin 9 of 10). Segments with a
-- verdict on the label are left out. The bins [i/bins, (i+1)/bins) take turns, each giving its next
-- segment in an order fixed by `seed`: every bin gets the same count where it holds enough
-- segments, and the fuller bins fill the rest.
-- Variables: model, label, head (NULL: the model's confidences), n, bins, seed.
WITH scored AS (
    SELECT recording_id, segment_index, uri, start_s, end_s,
        round(coalesce(confidences[list_position(labels, getvariable('label'))], 0)::DOUBLE, 7) AS score
    FROM segments
    WHERE model = getvariable('model') AND getvariable('head') IS NULL
    UNION ALL
    SELECT recording_id, segment_index, uri, start_s, end_s, round(score::DOUBLE, 7) AS score
    FROM head_scores
    WHERE model = getvariable('model') AND head = getvariable('head')
),
unreviewed AS (
    SELECT s.*,
        least(greatest(floor(s.score * getvariable('bins') + 1e-9), 0), getvariable('bins') - 1)::INTEGER AS bin
    FROM scored AS s
    ANTI JOIN (
        FROM annotations WHERE model = getvariable('model') AND label = getvariable('label')
    ) AS a ON a.recording_id = s.recording_id AND a.segment_index = s.segment_index
        AND same_span(a.start_s, s.start_s)
)
SELECT recording_id || ':' || segment_index AS segment_id, uri, start_s, end_s,
    getvariable('label') AS label, score, bin,
    row_number() OVER (
        PARTITION BY bin
        ORDER BY hash(recording_id, segment_index, getvariable('seed')), recording_id, segment_index
    ) AS turn
FROM unreviewed
ORDER BY turn, bin
LIMIT getvariable('n');
