"""Output: the Parquet schema, the one writer, and DuckDB queries over the views in ``sql/``."""
