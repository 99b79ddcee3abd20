-- Run report: what is detected over time in recording uri (a model without thresholds: its top-1
-- label), one lane per label: the recording's `lanes` most frequent detected labels, then one lane
-- "other (N labels)" for the rest. A segment where nothing known is heard has no row (a gap).
-- A recording with more detected segments than `bins` comes in `bins` equal time bins instead, each
-- with the highest confidence of each lane in it: at most (lanes + 1) * bins rows, however long.
-- Variables: model, uri, lanes, bins.
WITH detected AS (
    SELECT segment_index, start_s, end_s, label, coalesce(confidence, 0.0) AS confidence FROM detections
    WHERE model = getvariable('model') AND uri = getvariable('uri')
),
ranked AS (
    SELECT label, row_number() OVER (ORDER BY count(*) DESC, label) AS rank FROM detected GROUP BY label
),
lanes AS (
    SELECT label, least(rank, getvariable('lanes') + 1) AS lane,
        CASE WHEN rank <= getvariable('lanes') THEN label
            ELSE 'other (' || count(*) OVER (PARTITION BY rank > getvariable('lanes')) || ' labels)'
        END AS lane_label
    FROM ranked
),
grid AS (  -- bin_s NULL: one cell per segment
    SELECT CASE WHEN count(DISTINCT segment_index) > getvariable('bins')
        THEN max(end_s) / getvariable('bins') END AS bin_s
    FROM detected
),
cells AS (
    SELECT lane, lane_label, start_s, end_s, confidence, bin_s,
        CASE WHEN bin_s IS NULL THEN segment_index
            ELSE least(floor(start_s / bin_s), getvariable('bins') - 1)::BIGINT END AS cell
    FROM detected JOIN lanes USING (label) CROSS JOIN grid
)
SELECT lane, any_value(lane_label) AS label,
    coalesce(cell * any_value(bin_s), min(start_s)) AS start_s,
    coalesce((cell + 1) * any_value(bin_s), max(end_s)) AS end_s,
    max(confidence) AS confidence
FROM cells GROUP BY lane, cell ORDER BY lane, start_s;
