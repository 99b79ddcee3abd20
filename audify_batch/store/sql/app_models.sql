-- Review desk (audify serve): the models with labeled segments, the model of the latest run first.
-- Variables: none.
WITH latest AS (SELECT model, max(started_at) AS last_run_at FROM runs GROUP BY model)
SELECT DISTINCT s.model, l.last_run_at
FROM (SELECT DISTINCT model FROM recordings) AS s
LEFT JOIN latest AS l USING (model)
ORDER BY l.last_run_at DESC NULLS LAST, s.model;
