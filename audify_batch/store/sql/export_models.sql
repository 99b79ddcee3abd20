-- Export (`audify export --model`): the model partitions of OUT, to name them when --model is wrong.
-- Parameters: none.
SELECT DISTINCT model FROM recording_history ORDER BY model;
