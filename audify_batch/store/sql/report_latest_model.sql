-- Run report: the model of the latest run.
-- Variables: none.
SELECT model FROM runs ORDER BY started_at DESC, run_id DESC LIMIT 1;
