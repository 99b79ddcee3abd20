"""Prefect glue for the flows in ``flows/``: tasks, artifacts, storage blocks, the backfill request."""
