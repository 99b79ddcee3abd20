"""What the flows publish, under stable artifact keys: progress, a summary table, a markdown report."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact, update_progress_artifact

from audify_batch.records import Progress, RunSummary
from audify_batch.report.run_report import store_report
from audify_batch.store.query import QueryResult, label_counts, markdown_table, remote_filesystem

PROGRESS_KEY = "label-progress"
SUMMARY_KEY = "label-summary"
REPORT_KEY = "label-report"
MAX_LISTED_FAILURES = 50


class ProgressPublisher:
    """Updates a progress artifact and logs, at most every ``every_s`` seconds."""

    def __init__(self, artifact_id: UUID, every_s: float = 2.0) -> None:
        self.artifact_id = artifact_id
        self.every_s = every_s
        self.last = 0.0

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if now - self.last < self.every_s and progress.recordings_done < progress.recordings_total:
            return
        self.last = now
        percent = 100.0 * progress.recordings_done / max(1, progress.recordings_total)
        update_progress_artifact(self.artifact_id, percent)
        get_run_logger().info(
            "%d/%d recordings, %d segments, %.2f h audio, %.0fx realtime",
            progress.recordings_done,
            progress.recordings_total,
            progress.segments,
            progress.audio_s / 3600,
            progress.realtime_factor,
        )


def summary_rows(summary: RunSummary) -> list[dict[str, Any]]:
    data = asdict(summary)
    failures = data.pop("failures")
    rows = [{"figure": key, "value": str(value)} for key, value in data.items()]
    rows.append({"figure": "realtime_factor", "value": f"{summary.realtime_factor:.1f}"})
    listed = failures[:MAX_LISTED_FAILURES]
    rows += [{"figure": "failed", "value": f"{uri}: {reason}"} for uri, reason in listed]
    return rows


def report_markdown(
    summary: RunSummary,
    title: str,
    html_url: str | None = None,
    counts: QueryResult | None = None,
) -> str:
    """Key figures, failures, and (when given) the archive's label counts, as markdown."""
    lines = [
        f"# {title}",
        "",
        f"- output: `{summary.out}`",
        f"- model: {summary.model}",
        f"- recordings: {summary.n_recordings} ({summary.n_labeled} labeled, {summary.n_skipped} unchanged, "
        f"{summary.n_failed} failed)",
        f"- segments: {summary.n_segments}; audio: {summary.audio_s / 3600:.2f} h in {summary.wall_s:.1f} s "
        f"({summary.realtime_factor:.0f}x realtime)",
    ]
    if html_url:
        lines.append(f"- full report (HTML, self-contained): [{html_url}]({html_url})")
    if summary.failures:
        lines += ["", "## Failures", ""]
        lines += [f"- `{uri}`: {reason}" for uri, reason in summary.failures[:MAX_LISTED_FAILURES]]
    if counts is not None:
        lines += ["", "## Detected labels over the archive", "", markdown_table(counts)]
    return "\n".join(lines) + "\n"


def publish_summary(
    summary: RunSummary,
    title: str,
    storage_options: dict[str, Any] | None = None,
    archive_report: bool = True,
) -> str | None:
    """The summary table and the markdown report; with ``archive_report`` also the HTML report
    (stored under OUT/reports, linked) and the archive's label counts. A shard passes False:
    its siblings are still writing OUT; the fan-out parent reports on the whole afterwards.
    """
    create_table_artifact(key=SUMMARY_KEY, table=summary_rows(summary), description=title)
    html_url, counts = None, None
    if archive_report:
        html_url = store_report(summary.out, summary.run_id, storage_options)
        counts = label_counts(summary.out, remote_filesystem(summary.out, storage_options))
    markdown = report_markdown(summary, title, html_url, counts)
    create_markdown_artifact(key=REPORT_KEY, markdown=markdown, description=title)
    return html_url
