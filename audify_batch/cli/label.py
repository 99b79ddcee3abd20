"""``audify label``: the archive job from the command line, with a progress bar."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tqdm import tqdm

from audify_batch.cli.console import EXIT_INTERRUPTED, EXIT_SOME_FAILED, print_lines
from audify_batch.ingest.segments import LastWindow, SegmentingConfig
from audify_batch.model.inference import Precision
from audify_batch.records import Progress, RunInterrupted, RunSummary
from audify_batch.run.config import LabelConfig, OutputConfig, RuntimeConfig, SourceConfig
from audify_batch.run.pipeline import label_archive

MODEL_DEFAULT = RuntimeConfig.model_dir
MODEL_HELP = (
    "model: default (YAMNet-based: ESC-50 labels, detected, AudioSet labels), "
    "fast (1.1.0: ESC-50 labels only, about 1.5x faster), or a checkpoint folder"
)


def add_label_parser(commands: Any) -> None:
    label = commands.add_parser(
        "label",
        help="label an archive into Parquet",
        description="Label every new or changed recording under SOURCE (a folder, a glob or a list "
        f"file) into OUT. Exit status: 0 all labeled (recordings cut short are labeled as far as "
        f"readable and listed as partial), {EXIT_SOME_FAILED} some recordings failed (see the summary), "
        "1 the run could not start (SOURCE missing or naming no audio files, bad options, OUT in use "
        "by another live run: see --wait-s).",
    )
    label.add_argument("source", help="a folder, glob, list file (.txt/.lst/.list) or file; local or s3://")
    label.add_argument("--out", required=True, help="output root (local folder or s3://bucket/prefix)")
    label.add_argument("--model", default=MODEL_DEFAULT, help=MODEL_HELP)
    add_thresholds_argument(label)
    add_segmenting_arguments(label)
    label.add_argument("--top-k", type=int, default=OutputConfig.top_k, help="labels kept per segment")
    label.add_argument(
        "--no-float16-copy",
        action="store_true",
        help="segments parts without embedding_f16, the float16 copy of each embedding that "
        "`audify head apply` reads 5 to 8x faster (saves 2 kB a segment of the default model)",
    )
    label.add_argument(
        "--batch-size", type=int, default=RuntimeConfig.batch_size, help="segments per model step"
    )
    label.add_argument(
        "--workers", type=int, help="DataLoader decode workers (default: chosen for the machine)"
    )
    label.add_argument("--threads", type=int, help="torch threads on CPU (default: all cores)")
    label.add_argument("--device", default=RuntimeConfig.device, help="auto, cpu or cuda[:N]")
    label.add_argument(
        "--precision",
        choices=[p.value for p in Precision],
        default=RuntimeConfig.precision.value,
        help="bf16 autocast where the hardware has it (auto), or force fp32/bf16",
    )
    label.add_argument(
        "--wait-s",
        type=float,
        default=RuntimeConfig.lease_wait_s,
        help="seconds to wait for an OUT in use by another run (0: fail at once)",
    )
    label.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_thresholds_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--thresholds",
        metavar="FILE",
        help="calibrated thresholds (audify calibrate --save): replace the model's own for the labels "
        "the file names, in `detected`",
    )


def add_segmenting_arguments(parser: argparse.ArgumentParser) -> None:
    """--hop-s, --last-window, --min-last-s, with the defaults of ``SegmentingConfig``."""
    parser.add_argument(
        "--hop-s",
        type=float,
        default=SegmentingConfig.hop_s,
        help="hop between windows (default: one window, no overlap)",
    )
    parser.add_argument(
        "--last-window",
        choices=[p.value for p in LastWindow],
        default=SegmentingConfig.last_window.value,
        help="pad: label the tail after the last full window; drop: full windows only",
    )
    parser.add_argument(
        "--min-last-s", type=float, default=SegmentingConfig.min_last_s, help="shortest tail labeled (pad)"
    )


def segmenting_from_args(args: argparse.Namespace) -> SegmentingConfig:
    return SegmentingConfig(args.hop_s, LastWindow(args.last_window), args.min_last_s)


def config_from_args(args: argparse.Namespace) -> LabelConfig:
    return LabelConfig(
        source=SourceConfig(args.source),
        output=OutputConfig(args.out, top_k=args.top_k, float16_copy=not args.no_float16_copy),
        segmenting=segmenting_from_args(args),
        runtime=RuntimeConfig(
            model_dir=args.model,
            batch_size=args.batch_size,
            workers=args.workers,
            threads=args.threads,
            device=args.device,
            precision=Precision(args.precision),
            lease_wait_s=args.wait_s,
            thresholds_file=args.thresholds,
        ),
    )


class ProgressBar:
    """tqdm over recordings, with segments, audio hours and realtime factor."""

    def __init__(self, enabled: bool) -> None:
        self.bar: tqdm | None = None
        self.enabled = enabled

    def __call__(self, progress: Progress) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = tqdm(total=progress.recordings_total, unit="rec", file=sys.stderr)
        self.bar.n = progress.recordings_done
        self.bar.set_postfix(
            segments=progress.segments,
            audio_h=f"{progress.audio_s / 3600:.2f}",
            realtime=f"{progress.realtime_factor:.0f}x",
            refresh=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def format_summary(summary: RunSummary) -> str:
    lines = [
        f"run {summary.run_id} -> {summary.out} ({summary.model})",
        f"recordings: {summary.n_recordings} found, {summary.n_labeled} labeled"
        + (f" ({summary.n_partial} partial: cut short)" if summary.n_partial else "")
        + f", {summary.n_skipped} unchanged (skipped), {summary.n_failed} failed",
        f"segments: {summary.n_segments}, audio {summary.audio_s / 3600:.2f} h in {summary.wall_s:.1f} s "
        f"({summary.realtime_factor:.0f}x realtime)",
    ]
    lines += [f"partial: {uri}: {reason}" for uri, reason in summary.warnings[:20]]
    if len(summary.warnings) > 20:
        lines.append(f"... and {len(summary.warnings) - 20} more partial (status 'partial' in recordings)")
    lines += [f"failed: {uri}: {reason}" for uri, reason in summary.failures[:20]]
    if len(summary.failures) > 20:
        lines.append(f"... and {len(summary.failures) - 20} more failures (see the recordings table)")
    return "\n".join(lines)


def run_label(args: argparse.Namespace) -> int:
    bar = ProgressBar(enabled=not args.no_progress)
    try:
        summary = label_archive(config_from_args(args), progress=bar)
    except RunInterrupted as stop:
        bar.close()
        done = stop.summary
        print(
            f"audify: interrupted: {done.n_labeled + done.n_failed} recordings committed to {done.out} "
            f"({done.n_segments} segments); run the same command again to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        bar.close()
    status = EXIT_SOME_FAILED if summary.n_failed else 0
    print_lines(format_summary(summary))
    return status
