-- Custom heads (`audify head apply`): which rows of one model's segments parts are current. One row
-- per labeled recording a segments part holds; `current` says whether it is the recording's current
-- state (the recordings view), so a part whose rows are all current is read whole and the others
-- filtered to their current recordings. Parts without a current recording are not listed.
-- Variables: model.
SELECT h.part, h.recording_id, h.n_segments, r.recording_id IS NOT NULL AS current
FROM recording_history AS h
LEFT JOIN recordings AS r
    ON r.model = h.model AND r.uri = h.uri AND r.recording_id = h.recording_id AND r.run_id = h.run_id
    AND r.part = h.part AND r.status IN ('labeled', 'partial')
WHERE h.model = getvariable('model') AND h.status IN ('labeled', 'partial') AND h.n_segments > 0
QUALIFY bool_or(current) OVER (PARTITION BY h.part)
ORDER BY h.part, h.recording_id;
