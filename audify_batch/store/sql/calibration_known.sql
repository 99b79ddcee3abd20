-- Calibration: whether a label has scores in OUT for one model: among its top-K labels (source
-- 'model'), or as a custom head's scores (source 'head', the head_scores view of head_scores.sql).
-- Variables: model, label, head (the head's name; NULL: the model's own labels).
SELECT CASE WHEN getvariable('head') IS NULL
    THEN EXISTS (FROM labels WHERE model = getvariable('model') AND label = getvariable('label'))
    ELSE EXISTS (FROM head_scores WHERE model = getvariable('model') AND head = getvariable('head'))
END AS known;
