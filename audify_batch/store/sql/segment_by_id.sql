-- One labeled segment by its id: recording_id rid and segment_index idx (audify explain --segment).
SELECT uri, start_s FROM segments
    WHERE recording_id = getvariable('rid') AND segment_index = getvariable('idx')
    LIMIT 1;
