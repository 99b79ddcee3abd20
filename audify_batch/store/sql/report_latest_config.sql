-- Run report: the settings of the latest run of one model.
-- Variables: model.
SELECT config_json FROM runs WHERE model = getvariable('model')
    ORDER BY started_at DESC, run_id DESC LIMIT 1;
