-- Review desk (audify serve): the labels a label queue can be drawn for, one model: how many
-- segments have each among their top-K ESC-50 labels, and in how many it is detected.
-- Variables: model.
WITH top_k AS (
    SELECT label, count(*) AS n_top_k FROM labels WHERE model = getvariable('model') GROUP BY label
), found AS (
    SELECT label, count(*) AS n_detected FROM detections WHERE model = getvariable('model') GROUP BY label
)
SELECT label, n_top_k, coalesce(n_detected, 0) AS n_detected
FROM top_k LEFT JOIN found USING (label)
ORDER BY n_detected DESC, n_top_k DESC, label;
