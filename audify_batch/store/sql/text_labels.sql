-- Text report section: Top-1 labels over the archive.
SELECT model, label, count(*) AS n_segments,
        count(*) / sum(count(*)) OVER (PARTITION BY model) AS share,
        count(DISTINCT uri) AS n_recordings
    FROM labels WHERE rank = 1
    GROUP BY model, label ORDER BY model, n_segments DESC, label;
