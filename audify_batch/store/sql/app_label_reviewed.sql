-- Review desk (audify serve): the segments of one model with a verdict on one label (any verdict).
-- Variables: model, label.
SELECT segment_id FROM annotations WHERE model = getvariable('model') AND label = getvariable('label');
