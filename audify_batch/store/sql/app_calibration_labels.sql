-- Review desk (audify serve): the labels reviewed for one model, with how many segments have a
-- verdict on each and how many of those say present (the latest verdict per segment counts).
-- Variables: model.
SELECT label, count(*) AS n_reviewed, count(*) FILTER (verdict = 'present') AS n_present
FROM annotations
WHERE model = getvariable('model')
GROUP BY label
ORDER BY n_reviewed DESC, label;
