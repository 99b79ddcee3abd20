"""The run report: one self-contained HTML file from DuckDB queries over OUT.

Every figure and table is an aggregate or a top-N query, so a report over a
large archive reads the Parquet through DuckDB and never loads the archive
into memory; what is cut off is summarised ("… and N more").
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
from fsspec.core import url_to_fs
from matplotlib.figure import Figure

from audify_batch.fs import is_local
from audify_batch.report.html import Link, esc, figure_png, format_value, img, page, table
from audify_batch.report.timeline import label_colours, timeline_png
from audify_batch.store.query import (
    QueryResult,
    connect,
    fetch,
    normalize_out,
    read_sql,
    remote_filesystem,
    subquery,
)

REPORTS = "reports"  # OUT/reports/<run_id>.html, written by the flows
SegmentUrl = Callable[[str], str]  # a segment id (RECORDING_ID:SEGMENT_INDEX) -> the URL of its page


@dataclass(frozen=True)
class ReportLimits:
    labels: int = 15  # labels shown in distributions; the rest is "other"
    recordings: int = 12  # recordings with a timeline and in the per-recording view
    review: int = 20  # rows per review queue
    failures: int = 50  # rows of the failures table; also of the partial recordings table
    events: int = 30


DEFAULT_LIMITS = ReportLimits()


def _q(con: duckdb.DuckDBPyConnection, name: str, model: str, **params: Any) -> QueryResult:
    """Run ``sql/report_<name>.sql`` for ``model``."""
    return fetch(con, read_sql(f"report_{name}"), {"model": model, **params})


def label_bar_png(counts: QueryResult, limit: int) -> bytes:
    labels, ns = counts.column("label"), counts.column("n")
    shown, rest = list(zip(labels[:limit], ns[:limit], strict=True)), sum(ns[limit:])
    if rest:
        shown.append((f"other ({len(labels) - limit} labels)", rest))
    fig = Figure(figsize=(9, 0.32 * len(shown) + 1))
    ax = fig.add_subplot()
    ax.barh([s[0] for s in reversed(shown)], [s[1] for s in reversed(shown)], color="#1f77b4")
    xlabel = "segments (detected label; top-1 for models without thresholds)"
    ax.set(xlabel=xlabel, title="label distribution over the archive")
    return figure_png(fig)


def per_recording_png(rows: QueryResult, uris: list[str], labels: list[str]) -> bytes:
    grid = np.zeros((len(uris), len(labels) + 1))
    index_u, index_l = {u: i for i, u in enumerate(uris)}, {lab: i for i, lab in enumerate(labels)}
    for uri, label, n in rows.rows:
        if uri in index_u:
            grid[index_u[uri], index_l.get(label, len(labels))] += n
    share = grid / np.maximum(grid.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(10, 0.35 * len(uris) + 2.2))
    ax = fig.add_subplot()
    image = ax.imshow(share, aspect="auto", cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels) + 1), [*labels, "other"], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(uris)), [os.path.basename(u) for u in uris], fontsize=8)
    fig.colorbar(image, ax=ax, label="share of the recording's segments")
    ax.set_title("detected labels per recording (share of its segments)")
    return figure_png(fig)


def confidence_png(bins: QueryResult) -> bytes:
    """Histogram of top-1 confidence from 40 bins counted in DuckDB."""
    counts = np.zeros(40)
    for index, n in bins.rows:
        counts[index] = n
    fig = Figure(figsize=(7, 2.6))
    ax = fig.add_subplot()
    ax.bar(np.arange(40) / 40, counts, width=1 / 40, align="edge", color="#ff7f0e")
    ax.set(xlabel="top-1 confidence", ylabel="segments", title="confidence histogram")
    return figure_png(fig)


def _events(
    con: duckdb.DuckDBPyConnection, model: str, uris: list[str], limit: int
) -> tuple[QueryResult, int]:
    sql = f"""SELECT uri, label, start_s, end_s, n_segments, mean_confidence FROM ({subquery("events")})
              WHERE list_contains(getvariable('uris'), uri) ORDER BY uri, start_s"""
    result = fetch(con, sql, {"uri": None, "uris": uris, "model": model})
    return QueryResult(result.columns, result.rows[:limit]), max(0, len(result.rows) - limit)


def _provenance(con: duckdb.DuckDBPyConnection, model: str, limits: ReportLimits) -> str:
    runs = _q(con, "runs", model)
    totals = _q(con, "totals", model).records()[0]
    config = _q(con, "latest_config", model).rows
    partial = f" ({totals['partial']} partial: cut short)" if totals["partial"] else ""
    audio_h = format_value("audio_h", float(totals["audio_h"]))
    return (
        f"<p>model <code>{esc(model)}</code>: {totals['labeled']} recordings labeled{partial}, "
        f"{totals['failed']} failed, {totals['segments']} segments, {audio_h} h of audio.</p>"
        + table(runs.columns, runs.rows[: limits.review], len(runs.rows) - limits.review)
        + settings_html(config[0][0] if config else None)
    )


def settings_html(config_json: str | None) -> str:
    """The latest run's settings: first what it used (device, precision, workers, threads), then
    what was asked. Runs before the ``used`` record show what was asked only."""
    settings = json.loads(config_json) if config_json else {}
    used = settings.pop("used", None)
    asked = json.dumps(settings, indent=1, sort_keys=True)
    if isinstance(used, dict):
        workers = used["workers"]
        used_line = (
            f"used: device {used['device']}, {used['precision']}, "
            f"{_count(workers, 'worker')}{' (decoding in the main process)' if workers == 0 else ''}, "
            f"{_count(used['torch_threads'], 'thread')}"
        )
    else:
        used_line = "used: not recorded (the run predates that record)"
    return (
        f"<p class='note'>settings of the latest run</p><p class='used'>{esc(used_line)}</p>"
        f"<p class='note'>asked:</p><pre>{esc(asked)}</pre>"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def html_report(
    out: str | os.PathLike[str],
    model: str | None = None,
    limits: ReportLimits = DEFAULT_LIMITS,
    filesystem: Any | None = None,
    segment_url: SegmentUrl | None = None,
) -> str:
    """The whole report as one HTML string (``filesystem``: an fsspec filesystem for a remote OUT).

    ``segment_url``: where a review queue's segment id links to (the review app's segment page,
    e.g. ``lambda id: f"segments/{id}?model={model}"``); None: the ids as plain text.
    """
    con = connect(out, filesystem=filesystem)
    try:
        latest = fetch(con, read_sql("report_latest_model")).rows
        model = model or (latest[0][0] if latest else "")
        return page(f"audify report: {normalize_out(out)}", _body(con, model, limits, segment_url))
    finally:
        con.close()


def _body(
    con: duckdb.DuckDBPyConnection, model: str, limits: ReportLimits, segment_url: SegmentUrl | None
) -> str:
    counts = _q(con, "label_counts", model)
    if not counts.rows:
        return (
            "<p>No labeled segments yet.</p>" + _partial(con, model, limits) + _failures(con, model, limits)
        )
    top_labels = counts.column("label")[: limits.labels]
    sizes = _q(con, "recording_sizes", model)
    uris = sizes.column("uri")[: limits.recordings]
    more_recordings = len(sizes.rows) - len(uris)
    events, more_events = _events(con, model, uris, limits.events)
    note = f'<p class="note">the {len(uris)} recordings with most segments; {more_recordings} more</p>'
    per_recording = per_recording_png(_q(con, "per_recording", model, uris=uris), uris, top_labels)
    timelines = timeline_png(con, model, uris, label_colours(top_labels))
    confidences = confidence_png(_q(con, "confidence_bins", model))
    parts = [
        "<h2>Run provenance</h2>",
        _provenance(con, model, limits),
        "<h2>Labels over the archive</h2>",
        img(label_bar_png(counts, limits.labels), "label distribution"),
        "<h2>Labels per recording</h2>",
        img(per_recording, "labels per recording"),
        note if more_recordings > 0 else "",
        "<h2>Timelines</h2>",
        img(timelines, "timelines"),
        "<h3>Events (consecutive segments with the same top label, merged)</h3>",
        table(events.columns, events.rows, more_events),
        "<h2>Confidence</h2>",
        img(confidences, "confidence histogram"),
        "<h2>Review queue</h2>",
        '<p class="note">segment_id: what <code>audify explain OUT --segment ID</code> takes</p>',
        "<h3>Least confident segments</h3>",
        review_table(_q(con, "least_confident", model, n=limits.review), segment_url),
        "<h3>Close calls: top two labels nearly tied</h3>",
        review_table(_q(con, "close_calls", model, n=limits.review), segment_url),
        _partial(con, model, limits),
        _failures(con, model, limits),
    ]
    return "\n".join(parts)


def _table(result: QueryResult, more: int = 0) -> str:
    return table(result.columns, result.rows, more)


def review_table(result: QueryResult, segment_url: SegmentUrl | None) -> str:
    """A review queue; each segment_id links to ``segment_url(id)`` when given."""
    if segment_url is None:
        return _table(result)
    i = result.columns.index("segment_id")
    rows = [(*row[:i], Link(row[i], segment_url(row[i])), *row[i + 1 :]) for row in result.rows]
    return table(result.columns, rows)


def _partial(con: duckdb.DuckDBPyConnection, model: str, limits: ReportLimits) -> str:
    """The recordings cut short (labeled as far as readable, counted as labeled); none: no section."""
    partial = _q(con, "partial", model)
    if not partial.rows:
        return ""
    shown = QueryResult(partial.columns, partial.rows[: limits.failures])
    note = "<p class='note'>cut short: labeled as far as readable, counted among the labeled</p>"
    return (
        f"<h2>Partial recordings ({len(partial.rows)})</h2>"
        + note
        + _table(shown, len(partial.rows) - limits.failures)
    )


def _failures(con: duckdb.DuckDBPyConnection, model: str, limits: ReportLimits) -> str:
    failures = _q(con, "failures", model)
    shown = QueryResult(failures.columns, failures.rows[: limits.failures])
    return f"<h2>Failures ({len(failures.rows)})</h2>" + _table(shown, len(failures.rows) - limits.failures)


def store_report(out: str, name: str, storage_options: dict[str, Any] | None = None) -> str:
    """Write the HTML report to ``OUT/reports/<name>.html`` (local or object storage); its URL."""
    fs, root = url_to_fs(out, **(storage_options or {}))
    path = posixpath.join(root, REPORTS, f"{name}.html")
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    fs.pipe_file(path, html_report(out, filesystem=remote_filesystem(out, storage_options)).encode())
    return Path(path).resolve().as_uri() if is_local(fs) else fs.unstrip_protocol(path)
