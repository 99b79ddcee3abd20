"""A labeling run: composed config, the loop (workers -> model -> writer), rows, shards and batches."""
