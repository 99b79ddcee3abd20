-- Review desk (audify serve): the custom heads with scores for one model's current segments
-- (the head_scores view): how many segments each scored, and how many at or above `high`.
-- Scores are matched to segments as the review queues and the segment table match them.
-- Variables: model, high.
SELECT h.head, count(*) AS n_scored, count(*) FILTER (h.score >= getvariable('high')) AS n_high
FROM head_scores AS h
JOIN segments AS s
    ON s.model = h.model AND s.recording_id = h.recording_id AND s.segment_index = h.segment_index
WHERE h.model = getvariable('model')
GROUP BY h.head
ORDER BY h.head;
