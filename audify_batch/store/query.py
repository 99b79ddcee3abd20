"""Query the Parquet output of ``audify label`` with DuckDB: the views, the report queries, a text report.

The SQL lives in the repository's ``sql/`` folder (``views.sql`` and one file per report query)
and works from the plain duckdb CLI too. Every parameter reaches the SQL as a DuckDB variable,
read there with ``getvariable('name')`` and bound here with a prepared statement: no value is
ever pasted into SQL text.

Every connection is read-only over OUT: once the views exist, DuckDB may read files under OUT
only (no other file or URL, no extension, no ATTACH) and its configuration is locked;
``run_sql`` also refuses statements that write (COPY, EXPORT, ...), inside OUT included.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import fsspec

SQL_DIR = Path(__file__).resolve().parent / "sql"
QUERY_FILES = ("label_counts", "top_segments", "timeline", "events", "similar_segments")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED_PREFIX = "audify_"  # variables views.sql keeps its state in
# Statement kinds run_sql runs: queries (SELECT, FROM, WITH, DESCRIBE, SUMMARIZE, SHOW, VALUES) and
# SET [VARIABLE] (the configuration is locked, so only variables change). EXPLAIN is not here:
# EXPLAIN ANALYZE runs the statement it explains, a COPY included.
READ_ONLY_STATEMENTS = frozenset(
    {duckdb.StatementType.SELECT, duckdb.StatementType.SET, duckdb.StatementType.VARIABLE_SET}
)


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [row[i] for row in self.rows]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def sql_path(name: str) -> Path:
    """The file ``sql/<name>.sql`` shipped in this package (the repository's ``sql/`` links here)."""
    path = SQL_DIR / f"{name}.sql"
    if not _NAME.fullmatch(name) or not path.is_file():
        known = ", ".join(sorted(p.stem for p in SQL_DIR.glob("*.sql")))
        raise FileNotFoundError(f"no SQL file {name!r} in {SQL_DIR}; there are: {known}")
    return path


def read_sql(name: str) -> str:
    return sql_path(name).read_text(encoding="utf-8")


def normalize_out(out: str | os.PathLike[str]) -> str:
    """OUT as the views see it: an absolute local path, or a URL (``s3://...``) without a trailing slash."""
    text = os.fspath(out)
    if text.startswith("file://"):
        text = text.removeprefix("file://")
    if "://" in text:
        return text.rstrip("/")
    return Path(text).expanduser().resolve().as_posix()


def set_params(con: duckdb.DuckDBPyConnection, params: Mapping[str, Any] | None) -> None:
    """Bind each value to the DuckDB variable of its name (None sets it to NULL, i.e. 'not given')."""
    for name, value in (params or {}).items():
        if not _NAME.fullmatch(name) or name.startswith(_RESERVED_PREFIX):
            raise ValueError(f"bad parameter name {name!r}: a plain identifier, not starting with 'audify_'")
        con.execute(f'SET VARIABLE "{name}" = $value', {"value": value})


def remote_filesystem(out: str, storage_options: dict[str, Any] | None = None) -> Any | None:
    """The fsspec filesystem for a URL OUT (``s3://``...), so DuckDB reads it without httpfs."""
    if "://" not in out:
        return None
    return fsspec.filesystem(out.split("://", 1)[0], **(storage_options or {}))


def connect(
    out: str | os.PathLike[str], embedding_dim: int | None = None, filesystem: Any | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the views of ``sql/views.sql`` over OUT.

    ``embedding_dim``: D of the FLOAT[D] embedding columns; default: the length of the first
    stored embedding. ``filesystem``: an fsspec filesystem to register, for an OUT that DuckDB
    cannot read by itself (e.g. ``s3://`` without the httpfs extension).
    """
    con = duckdb.connect()
    try:
        filesystem = filesystem if filesystem is not None else remote_filesystem(normalize_out(out))
        if filesystem is not None:
            con.register_filesystem(filesystem)
        con.execute("SET TimeZone = 'UTC'")
        set_params(con, {"out": normalize_out(out), "embedding_dim": embedding_dim})
        con.execute(read_sql("views"))
        lock_to_out(con, normalize_out(out))
    except BaseException:
        con.close()
        raise
    return con


def lock_to_out(con: duckdb.DuckDBPyConnection, out: str) -> None:
    """From now on ``con`` reaches only files under OUT (its own or a registered filesystem's
    paths): no other file or URL, no extension install or load, no ATTACH elsewhere, and no
    setting changes (the lock covers this call's own settings too)."""
    con.execute("SET allowed_directories = $dirs", {"dirs": [out.rstrip("/") + "/"]})
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse SQL with a statement that could write (COPY, EXPORT, ATTACH, INSTALL, CREATE, ...).

    The connection's lock keeps every file outside OUT out of reach; this keeps OUT itself
    unwritten (a stray COPY into OUT/segments would break every later query).
    """
    for statement in con.extract_statements(sql):
        if statement.type not in READ_ONLY_STATEMENTS:
            kind = statement.type.name.replace("_", " ")
            text = " ".join(statement.query.split())
            text = text if len(text) <= 60 else text[:57] + "..."
            raise ValueError(
                f"read-only SQL: {kind} statements are refused ({text}); run queries "
                "(SELECT, FROM, WITH, DESCRIBE, SUMMARIZE, SHOW) and SET VARIABLE only"
            )


def fetch(con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
    """Run ``sql`` (its last statement gives the result) with ``params`` bound for this call only."""
    set_params(con, params)
    try:
        cursor = con.execute(sql)
        columns = tuple(d[0] for d in cursor.description or ())
        rows = tuple(tuple(row) for row in cursor.fetchall()) if columns else ()
    finally:
        set_params(con, dict.fromkeys(params or {}))
    return QueryResult(columns, rows)


def fetch_file(
    con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any] | None = None
) -> QueryResult:
    return fetch(con, read_sql(name), params)


def run_sql(out: str | os.PathLike[str], sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
    """Run read-only ``sql`` over the views of OUT; the SQL reads ``params`` with ``getvariable('name')``.

    Statements that write are refused (``ValueError``), and so are reads of anything outside
    OUT (``duckdb.PermissionException``, its message saying that only OUT is readable).
    """
    con = connect(out)
    try:
        check_read_only(con, sql)
        try:
            return fetch(con, sql, params)
        except duckdb.PermissionException as error:
            reason = str(error).strip().splitlines()[0]
            raise duckdb.PermissionException(
                f"{reason} (audify reads only under {normalize_out(out)})"
            ) from error
    finally:
        con.close()


def run_query_file(
    out: str | os.PathLike[str], name: str, params: Mapping[str, Any] | None = None
) -> QueryResult:
    """Run ``sql/<name>.sql`` (e.g. ``'events'``) over OUT with ``params`` (e.g. ``{'uri': ...}``)."""
    return run_sql(out, read_sql(name), params)


def _cell(value: Any, width: int) -> str:
    if value is None:
        text = ""
    elif isinstance(value, float):
        text = f"{value:.3f}"
    elif isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S")
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(_cell(v, width) for v in value) + "]"
    else:
        text = str(value)
    text = text.replace("\n", " ")
    if len(text) > width:
        half = (width - 1) // 2
        text = text[:half] + "…" + text[len(text) - (width - 1 - half) :]
    return text


def _numeric(values: Sequence[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present)


def format_table(result: QueryResult, max_rows: int = 50, max_width: int = 80) -> str:
    """A plain-text table: numbers right-aligned, long cells cut in the middle, extra rows counted."""
    if not result.columns:
        return "(no result)"
    shown = result.rows[:max_rows]
    cells = [[_cell(v, max_width) for v in row] for row in shown]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(result.columns)]
    right = [_numeric([row[i] for row in shown]) for i in range(len(result.columns))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)]
        return "  ".join(parts).rstrip()

    lines = [line(result.columns), "  ".join("-" * w for w in widths)]
    lines += [line(r) for r in cells]
    if not result.rows:
        lines.append("(no rows)")
    elif len(result.rows) > len(shown):
        lines.append(f"… {len(result.rows) - len(shown)} more rows")
    return "\n".join(lines)


def subquery(name: str) -> str:
    """A query file's text, usable inside parentheses."""
    return read_sql(name).strip().rstrip(";")


def _report_sql() -> dict[str, str]:
    """Title and SQL of each section of the text report: ``sql/text_*.sql``, and two
    summaries over the shipped ``label_counts`` and ``events`` queries."""
    sections = {
        "Runs": read_sql("text_runs"),
        "Recordings (current state)": read_sql("text_recordings"),
        "Partial recordings (current)": read_sql("text_partial"),
        "Failures (current)": read_sql("text_failures"),
        "Detected labels over the archive": read_sql("text_labels"),
    }
    sections["Top label per recording"] = f"""
        SELECT model, uri, label, n_segments, share
        FROM ({subquery("label_counts")})
        QUALIFY row_number() OVER (PARTITION BY model, uri ORDER BY n_segments DESC, label) = 1
        ORDER BY model, uri"""
    sections["Events (runs of one detected label)"] = f"""
        SELECT model, label, count(*) AS n_events, count(DISTINCT uri) AS n_recordings,
            sum(end_s - start_s) AS total_s, max(end_s - start_s) AS longest_s
        FROM ({subquery("events")})
        GROUP BY model, label ORDER BY model, n_events DESC, label"""
    return sections


def text_report(out: str | os.PathLike[str], max_rows: int = 50) -> str:
    """A plain-text report of OUT: runs, current counts, failures, labels, events."""
    con = connect(out)
    try:
        sections = [f"audify report: {normalize_out(out)}"]
        for title, sql in _report_sql().items():
            table = format_table(fetch(con, sql), max_rows=max_rows)
            sections.append(f"== {title} ==\n{table}")
    finally:
        con.close()
    return "\n\n".join(sections) + "\n"


def label_counts(out: str | os.PathLike[str], filesystem: Any | None = None) -> QueryResult:
    """Top-1 label counts over the archive's current segments, per model, most frequent first."""
    con = connect(out, filesystem=filesystem)
    try:
        return fetch(con, _report_sql()["Detected labels over the archive"])
    finally:
        con.close()


def markdown_table(result: QueryResult, max_rows: int = 20) -> str:
    """``result`` as a GitHub-flavoured markdown table; rows past ``max_rows`` summarised."""
    lines = ["| " + " | ".join(result.columns) + " |", "|" + "---|" * len(result.columns)]
    for row in result.rows[:max_rows]:
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v).replace("|", "\\|") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    if len(result.rows) > max_rows:
        lines.append(f"\n… and {len(result.rows) - max_rows} more rows")
    return "\n".join(lines)
