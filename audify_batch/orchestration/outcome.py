"""The final state of a labeling flow run: clean, or completed with some recordings failed.

A run where a few of many recordings are corrupt did its job: every other recording is committed,
and a retry would fail on the same files again. So it is never a ``Failed`` state (no page, no
retry) but a ``Completed`` state of its own name, ``CompletedWithFailures``, with the count in
its message, visibly apart from a clean run in the UI and to anything that filters on state names.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from prefect import get_run_logger
from prefect.states import Completed, State

from audify_batch.records import RunSummary

COMPLETED_WITH_FAILURES = "CompletedWithFailures"


def state_message(summary: RunSummary) -> str:
    counts = f"{summary.n_labeled} labeled, {summary.n_skipped} unchanged"
    if not summary.n_failed:
        return f"{counts}, none failed"
    return (
        f"{summary.n_failed} of {summary.n_recordings} recordings failed ({counts}); "
        "the failures are in the label-summary artifact and the recordings table"
    )


def final_state(summary: RunSummary, result: dict[str, Any]) -> State[dict[str, Any]]:
    """``Completed`` with ``result`` as data; named ``CompletedWithFailures`` when any recording failed."""
    name = COMPLETED_WITH_FAILURES if summary.n_failed else "Completed"
    return Completed(name=name, message=state_message(summary), data=result)


def report_location(url: str | None) -> str | None:
    """Where the HTML report is, for a person: a local path for ``file://`` URLs, else the URL."""
    if url is None or not url.startswith("file://"):
        return url
    return url2pathname(urlparse(url).path)


def finish_run(summary: RunSummary, report_url: str | None, summary_text: str) -> State[dict[str, Any]]:
    """Log ``summary_text`` (the summary as ``audify label`` prints it, failures named) and where
    the report went; the flow's final state, with the summary as a dict for its result."""
    logger = get_run_logger()
    logger.info("%s", summary_text)
    if report_url:
        logger.info("report: %s", report_location(report_url))
    result = {**asdict(summary), "realtime_factor": summary.realtime_factor, "report_url": report_url}
    return final_state(summary, result)
