-- Review desk (audify serve): the values the segment filters offer for one model: top ESC-50
-- labels, detected labels, top AudioSet labels and runs, each with its count of segments.
-- Variables: model.
WITH chosen AS (SELECT * FROM segments WHERE model = getvariable('model'))
SELECT 'label' AS kind, labels[1] AS value, count(*) AS n FROM chosen GROUP BY ALL
UNION ALL
SELECT 'detected', label, count(*) FROM detections WHERE model = getvariable('model') GROUP BY ALL
UNION ALL
SELECT 'audioset', audioset_labels[1], count(*) FROM chosen WHERE audioset_labels IS NOT NULL GROUP BY ALL
UNION ALL
SELECT 'run_id', run_id, count(*) FROM chosen GROUP BY ALL
ORDER BY kind, n DESC, value;
