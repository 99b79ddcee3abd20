"""Prefect flow: label an archive (or one shard of it) with the library function the CLI uses.

Run it directly (Prefect starts a temporary local server, no setup):

    .venv/bin/python flows/label_archive.py SOURCE OUT

Deployed (``prefect.yaml``) it is the scheduled incremental job (each run
labels only what is new or changed since it was last labeled) and the shard
job of the fan-out flow. It logs through Prefect's logger (the summary, up to 20
failed recordings, where the report went) and publishes the artifacts
``label-progress``, ``label-summary`` and ``label-report``. A run where some
recordings failed ends in a ``Completed`` state named ``CompletedWithFailures``
(not ``Failed``: no retry, no alert as a crash; run directly, it exits with 3
like ``audify label``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, cast

from prefect import flow, get_run_logger
from prefect.states import State

from audify_batch.cli.console import EXIT_ERROR, EXIT_SOME_FAILED
from audify_batch.cli.label import format_summary
from audify_batch.ingest.segments import SegmentingConfig
from audify_batch.orchestration.artifacts import publish_summary
from audify_batch.orchestration.outcome import COMPLETED_WITH_FAILURES, finish_run
from audify_batch.orchestration.storage import storage_options_from_block
from audify_batch.orchestration.tasks import count_recordings, label_task
from audify_batch.run.config import LabelConfig, OutputConfig, RuntimeConfig


@flow(name="label-archive", log_prints=True)
def label_archive_flow(
    source: str,
    out: str,
    model_dir: str = RuntimeConfig.model_dir,
    hop_s: float | None = SegmentingConfig.hop_s,
    top_k: int = OutputConfig.top_k,
    batch_size: int = RuntimeConfig.batch_size,
    workers: int | None = None,
    shard_index: int = 0,
    shard_count: int = 1,
    batch_id: str | None = None,
    manifest: str | None = None,
    gpu_limit: str | None = None,
    storage_block: str | None = None,
) -> State[dict[str, Any]]:
    """Label every new or changed recording of SOURCE (or of one shard of it) into OUT (Parquet).

    ``storage_block``: name of a Secret block with fsspec storage options (credentials,
    endpoint); without it the AWS environment and config files of the worker are used.
    ``manifest``: the fan-out's listing of SOURCE (``OUT/manifests/<batch_id>.parquet``); the run
    labels its shard's slice of it and never lists SOURCE itself.

    Ends ``Completed``, or ``Completed`` named ``CompletedWithFailures`` when recordings failed;
    its result (what calling the flow returns) is the run summary as a dict.
    """
    logger = get_run_logger()
    options = storage_options_from_block(storage_block)
    config = LabelConfig.of(
        source,
        out,
        options,
        model_dir=model_dir,
        hop_s=hop_s,
        top_k=top_k,
        batch_size=batch_size,
        workers=workers,
        shard_index=shard_index,
        shard_count=shard_count,
        batch_id=batch_id,
        manifest=manifest,
    )
    found_in = f"the manifest {manifest}" if manifest else source
    logger.info("%d recordings for this run in %s", count_recordings(config), found_in)
    summary = label_task(config, gpu_limit)
    shard = f" shard {shard_index + 1}/{shard_count}" if shard_count > 1 else ""
    report_url = publish_summary(
        summary, f"Labeling run {summary.run_id}{shard}", options, archive_report=shard_count == 1
    )
    return finish_run(summary, report_url, format_summary(summary))


# Run directly, the flow's temporary Prefect server and the client send no usage data (an
# offline machine would log "Failed to send telemetry" errors); the environment can override.
ANALYTICS_OFF = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def main(argv: list[str] | None = None) -> int:
    """Label SOURCE into OUT once; exit 0 all labeled, 3 some recordings failed, 1 the run failed."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--model", default=RuntimeConfig.model_dir)
    args = parser.parse_args(argv)
    for name, value in ANALYTICS_OFF.items():
        os.environ.setdefault(name, value)  # read by the temporary server when it starts
    # Prefect unwraps the State the flow returns: return_state gives that state itself.
    state = cast(
        State[dict[str, Any]],
        label_archive_flow(args.source, args.out, model_dir=args.model, return_state=True),
    )
    if not state.is_completed():
        print(f"label-archive: {state.name}: {state.message}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_SOME_FAILED if state.name == COMPLETED_WITH_FAILURES else 0


if __name__ == "__main__":
    raise SystemExit(main())
