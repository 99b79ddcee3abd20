"""The ``audify`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import duckdb
import torch

from audify_batch import __version__
from audify_batch.cli.explain import add_explain_parser, run_explain
from audify_batch.cli.label import add_label_parser, run_label
from audify_batch.ingest.audio_io import AudioDecodeError
from audify_batch.ingest.segments import LastWindow
from audify_batch.ingest.sources import SourceError
from audify_batch.model.checkpoint import DEFAULT_MODEL_DIR, CheckpointError, load_checkpoint
from audify_batch.model.inference import (
    SEGMENT_S,
    Precision,
    SegmentPrediction,
    classify_file,
    prepare_for_inference,
)
from audify_batch.report.run_report import html_report
from audify_batch.store.query import format_table, run_sql, text_report


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _hop_s(text: str) -> float:
    value = float(text)
    if not 0 < value <= SEGMENT_S:
        raise argparse.ArgumentTypeError(f"hop must be in (0, {SEGMENT_S}] seconds, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audify", description="Label environmental sounds.")
    parser.add_argument("--version", action="version", version=f"audify-batch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    classify = commands.add_parser("classify", help="top-K labels for each 5 s segment of a file")
    classify.add_argument("file", type=Path)
    classify.add_argument("--top-k", type=_positive_int, default=3)
    classify.add_argument("--hop-s", type=_hop_s, default=SEGMENT_S, help="segment hop (overlap)")
    classify.add_argument("--last-window", choices=[p.value for p in LastWindow], default="pad")
    classify.add_argument("--min-last-s", type=float, default=1.0, help="shortest tail labeled (pad)")
    classify.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="checkpoint folder")
    classify.add_argument("--precision", choices=[p.value for p in Precision], default="auto")
    add_label_parser(commands)
    query = commands.add_parser("query", help="run DuckDB SQL over the views of OUT")
    query.add_argument("out")
    query.add_argument("sql", help="SQL over the views segments, recordings, runs, labels, embeddings")
    query.add_argument("--max-rows", type=_positive_int, default=50)
    report = commands.add_parser("report", help="a plain-text report of OUT (or HTML with --html)")
    report.add_argument("out")
    report.add_argument("--html", type=Path, help="write a self-contained HTML report to this file")
    report.add_argument("--model", help="model partition (name-version); default: of the latest run")
    add_explain_parser(commands)
    return parser


def run_query(args: argparse.Namespace) -> int:
    print(format_table(run_sql(args.out, args.sql), max_rows=args.max_rows))
    return 0


def run_report(args: argparse.Namespace) -> int:
    if args.html is None:
        print(text_report(args.out))
        return 0
    args.html.parent.mkdir(parents=True, exist_ok=True)
    args.html.write_text(html_report(args.out, args.model))
    print(f"wrote {args.html}")
    return 0


def format_prediction(prediction: SegmentPrediction) -> str:
    labels = "  ".join(
        f"{label} {conf:.3f}" for label, conf in zip(prediction.labels, prediction.confidences, strict=True)
    )
    return f"{prediction.start_s:9.2f} {prediction.end_s:9.2f}  {labels}"


def run_classify(args: argparse.Namespace) -> int:
    model, card = load_checkpoint(args.model)
    model = prepare_for_inference(model, torch.device("cpu"))
    predictions = classify_file(
        model,
        card,
        args.file,
        k=args.top_k,
        hop_s=args.hop_s,
        last_window=LastWindow(args.last_window),
        min_last_s=args.min_last_s,
        precision=Precision(args.precision),
    )
    print(f"# {args.file}  model {card.name} {card.version}")
    print(f"# {'start_s':>7} {'end_s':>9}  top-{args.top_k} labels with confidences")
    for prediction in predictions:
        print(format_prediction(prediction), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {
        "classify": run_classify,
        "label": run_label,
        "query": run_query,
        "report": run_report,
        "explain": run_explain,
    }
    try:
        return commands[args.command](args)
    except (
        AudioDecodeError,
        CheckpointError,
        SourceError,
        ValueError,
        duckdb.Error,
        FileNotFoundError,
    ) as error:
        print(f"audify: error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
