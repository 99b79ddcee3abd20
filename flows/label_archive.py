"""Prefect flow: label an archive with the same library function the CLI uses.

Run it directly (Prefect starts a temporary local server, no setup):

    .venv/bin/python flows/label_archive.py SOURCE OUT

The flow logs through Prefect's logger and publishes a progress artifact
(``label-progress``) and a summary table (``label-summary``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact

from audify_batch.checkpoint import DEFAULT_MODEL_DIR
from audify_batch.pipeline import LabelConfig, label_archive
from audify_batch.records import Progress, RunSummary
from audify_batch.sources import discover

PROGRESS_KEY = "label-progress"
SUMMARY_KEY = "label-summary"


@task(retries=3, retry_delay_seconds=[2, 10, 30])
def count_recordings(source: str) -> int:
    """Discovery is I/O: retried. Returns only a count (the label task discovers again)."""
    return len(discover(source))


class _ProgressPublisher:
    """Updates the progress artifact at most every ``every_s`` seconds."""

    def __init__(self, artifact_id: Any, every_s: float = 2.0) -> None:
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


@task
def label_task(config: LabelConfig) -> RunSummary:
    artifact_id = create_progress_artifact(0.0, key=PROGRESS_KEY, description="recordings labeled")
    summary = label_archive(config, progress=_ProgressPublisher(artifact_id))
    update_progress_artifact(artifact_id, 100.0)
    return summary


def summary_rows(summary: RunSummary) -> list[dict[str, Any]]:
    data = asdict(summary)
    failures = data.pop("failures")
    rows = [{"figure": key, "value": str(value)} for key, value in data.items()]
    rows.append({"figure": "realtime_factor", "value": f"{summary.realtime_factor:.1f}"})
    rows += [{"figure": "failed", "value": f"{uri}: {reason}"} for uri, reason in failures[:50]]
    return rows


@flow(name="label-archive", log_prints=True)
def label_archive_flow(
    source: str,
    out: str,
    model_dir: str = str(DEFAULT_MODEL_DIR),
    hop_s: float = 5.0,
    top_k: int = 5,
    batch_size: int = 64,
    workers: int | None = None,
) -> dict[str, Any]:
    """Label every new or changed recording of SOURCE into OUT (Parquet)."""
    logger = get_run_logger()
    config = LabelConfig(source=source, out=out, model_dir=model_dir, hop_s=hop_s, top_k=top_k,
                         batch_size=batch_size, workers=workers)  # fmt: skip
    logger.info("%d recordings under %s", count_recordings(source), source)
    summary = label_task(config)
    create_table_artifact(key=SUMMARY_KEY, table=summary_rows(summary), description=f"run {summary.run_id}")
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
