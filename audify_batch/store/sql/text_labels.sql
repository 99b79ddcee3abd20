-- Text report section: detected labels over the archive (a model without thresholds: its top-1
-- label); share = of the model's segments.
SELECT d.model, d.label, count(*) AS n_segments,
        count(*) / any_value(t.n) AS share,
        count(DISTINCT d.uri) AS n_recordings
    FROM detections AS d JOIN (SELECT model, count(*) AS n FROM segments GROUP BY ALL) AS t USING (model)
    GROUP BY d.model, d.label ORDER BY d.model, n_segments DESC, d.label;
