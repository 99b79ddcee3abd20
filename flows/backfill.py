"""Prefect flow: an ad-hoc backfill over a prefix, a modification-time range or an explicit list.

Parameters are one typed request, validated before any work starts: Prefect
checks it against the deployment's schema when the run is created and again
when the flow starts, so a bad parameter fails with a clear message and
nothing is read or written. A backfill may use another model version; its
rows go to that model's own partition beside the others. Like the label flow, a
backfill where some recordings failed ends ``Completed`` named ``CompletedWithFailures``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.states import State

from audify_batch.cli.label import format_summary
from audify_batch.orchestration.artifacts import publish_summary
from audify_batch.orchestration.backfill import BackfillRequest
from audify_batch.orchestration.outcome import finish_run
from audify_batch.orchestration.tasks import label_task


@flow(name="label-backfill", log_prints=True)
def backfill_flow(request: BackfillRequest) -> State[dict[str, Any]]:
    """Label what the request names; unchanged recordings already labeled this way are skipped."""
    logger = get_run_logger()
    logger.info("backfill into %s with %s", request.out, request.model_dir)
    config = request.label_config()
    summary = label_task(config, request.gpu_limit)
    report_url = publish_summary(summary, f"Backfill {summary.run_id}", config.storage_options)
    return finish_run(summary, report_url, format_summary(summary))
