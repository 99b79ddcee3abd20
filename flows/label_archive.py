"""Prefect flow: label an archive (or one shard of it) with the library function the CLI uses.

Run it directly (Prefect starts a temporary local server, no setup):

    .venv/bin/python flows/label_archive.py SOURCE OUT

Deployed (``prefect.yaml``) it is the scheduled incremental job (each run
labels only what is new or changed since it was last labeled) and the shard
job of the fan-out flow. It logs through Prefect's logger and publishes the
artifacts ``label-progress``, ``label-summary`` and ``label-report``.
"""

from __future__ import annotations

import argparse
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.concurrency.sync import concurrency

from audify_batch.checkpoint import DEFAULT_MODEL_DIR
from audify_batch.pipeline import LabelConfig, ModelGate, label_archive
from audify_batch.records import RunSummary
from audify_batch.sources import discover_all
from flows.artifacts import PROGRESS_KEY, ProgressPublisher, publish_summary
from flows.storage import storage_options_from_block


@task(retries=3, retry_delay_seconds=[2, 10, 30])
def count_recordings(source: str | list[str], storage_block: str | None = None) -> int:
    """Discovery is I/O: retried. Returns only a count (the label task discovers again)."""
    sources = source if isinstance(source, str) else tuple(source)
    return len(discover_all(sources, storage_options_from_block(storage_block)))


def gpu_gate(limit_name: str | None) -> ModelGate:
    """Hold one slot of the global concurrency limit ``limit_name`` around each model step."""
    if not limit_name:
        return nullcontext

    def gate() -> AbstractContextManager[object]:
        return concurrency(limit_name, occupy=1, strict=True)

    return gate


@task
def label_task(config: LabelConfig, gpu_limit: str | None = None) -> RunSummary:
    artifact_id = create_progress_artifact(0.0, key=PROGRESS_KEY, description="recordings labeled")
    summary = label_archive(config, progress=ProgressPublisher(artifact_id), model_gate=gpu_gate(gpu_limit))
    update_progress_artifact(artifact_id, 100.0)
    return summary


@flow(name="label-archive", log_prints=True)
def label_archive_flow(
    source: str,
    out: str,
    model_dir: str = str(DEFAULT_MODEL_DIR),
    hop_s: float = 5.0,
    top_k: int = 5,
    batch_size: int = 64,
    workers: int | None = None,
    shard_index: int = 0,
    shard_count: int = 1,
    batch_id: str | None = None,
    gpu_limit: str | None = None,
    storage_block: str | None = None,
) -> dict[str, Any]:
    """Label every new or changed recording of SOURCE (or of one shard of it) into OUT (Parquet).

    ``storage_block``: name of a Secret block with fsspec storage options (credentials,
    endpoint); without it the AWS environment and config files of the worker are used.
    """
    logger = get_run_logger()
    options = storage_options_from_block(storage_block)
    config = LabelConfig(source=source, out=out, model_dir=model_dir, hop_s=hop_s, top_k=top_k,
                         batch_size=batch_size, workers=workers, shard_index=shard_index,
                         shard_count=shard_count, batch_id=batch_id, storage_options=options)  # fmt: skip
    logger.info("%d recordings under %s", count_recordings(source, storage_block), source)
    summary = label_task(config, gpu_limit)
    shard = f" shard {shard_index + 1}/{shard_count}" if shard_count > 1 else ""
    publish_summary(
        summary, f"Labeling run {summary.run_id}{shard}", options, archive_report=shard_count == 1
    )
    logger.info(
        "run %s: %d labeled, %d skipped, %d failed, %d segments",
        summary.run_id,
        summary.n_labeled,
        summary.n_skipped,
        summary.n_failed,
        summary.n_segments,
    )
    return {**asdict(summary), "realtime_factor": summary.realtime_factor}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    args = parser.parse_args()
    label_archive_flow(args.source, args.out, model_dir=args.model)


if __name__ == "__main__":
    main()
