-- Calibration and custom heads: the models with reviewers' verdicts on one label, most verdicts first.
-- Variables: label.
SELECT model, count(*) AS n_verdicts
FROM annotations
WHERE label = getvariable('label')
GROUP BY model
ORDER BY n_verdicts DESC, model;
