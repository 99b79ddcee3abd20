"""``audify explain``: figures and a small HTML page for one segment of a recording."""

from __future__ import annotations

import argparse
import time
from pathlib import Path, PurePosixPath
from typing import Any

from audify_batch.cli.label import MODEL_DEFAULT, MODEL_HELP
from audify_batch.model.checkpoint import load_checkpoint
from audify_batch.report.explain import explain_window, read_window, segment_start_s
from audify_batch.report.explain_page import write_explanation
from audify_batch.run.config import OutputConfig
from audify_batch.store.query import run_query_file

EXPLAIN_ROOT = "audify-explain"


def add_explain_parser(commands: Any) -> None:
    explain = commands.add_parser(
        "explain",
        help="explain one segment: waveform, log-mel, top-K, CNN feature maps, Grad-CAM",
        description="SOURCE is a recording with --at SECONDS, or a labeling OUT with --segment ID:INDEX "
        "(recording_id and segment_index from the segments table).",
    )
    explain.add_argument("source", help="a recording (path or URL), or OUT with --segment")
    where = explain.add_mutually_exclusive_group(required=True)
    where.add_argument("--at", type=float, help="a second inside the segment to explain")
    where.add_argument("--segment", help="RECORDING_ID:SEGMENT_INDEX of a labeled segment in OUT")
    explain.add_argument(
        "--hop-s", type=float, help="segment grid for --at, as labeled (default: the model's segment length)"
    )
    explain.add_argument("--top-k", type=int, default=OutputConfig.top_k, help="labels shown")
    explain.add_argument("--model", default=MODEL_DEFAULT, help=MODEL_HELP)
    explain.add_argument(
        "--out",
        type=Path,
        help=f"folder for the page and figures (default: {EXPLAIN_ROOT}/RECORDING-at-START)",
    )


def default_out_dir(uri: str, start_s: float) -> Path:
    """``audify-explain/<recording>-at-<start>s`` under the current folder."""
    return Path(EXPLAIN_ROOT) / f"{PurePosixPath(uri).stem}-at-{start_s:g}s"


def locate_segment(out: str, segment: str) -> tuple[str, float]:
    """(uri, start_s) of segment ``RECORDING_ID:INDEX`` in OUT."""
    recording_id, _, index = segment.partition(":")
    if not recording_id or not index.isdigit():
        raise ValueError(f"--segment wants RECORDING_ID:SEGMENT_INDEX, got {segment!r}")
    rows = run_query_file(out, "segment_by_id", {"rid": recording_id, "idx": int(index)}).rows
    if not rows:
        raise ValueError(f"no segment {segment} in {out}")
    return rows[0][0], float(rows[0][1])


def run_explain(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    model, card = load_checkpoint(args.model)
    if args.segment:
        uri, start_s = locate_segment(args.source, args.segment)
    else:
        uri, start_s = args.source, segment_start_s(args.at, args.hop_s or card.segment_s)
    window = read_window(uri, start_s, card.frontend.sample_rate_hz, card.segment_s)
    explanation = explain_window(model, card, window, args.top_k)
    out_dir = args.out or default_out_dir(uri, start_s)
    page = write_explanation(explanation, out_dir, f"{card.name} {card.version}", args.at)
    for label, confidence in zip(explanation.labels, explanation.confidences, strict=True):
        print(f"{label:<20} {confidence:.3f}")
    print(
        f"wrote {page} and {len(list(out_dir.glob('*.png')))} figures "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return 0
