"""The ``audify`` command line."""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import torch

from audify_batch import __version__
from audify_batch.cli.console import EXIT_ERROR, EXIT_INTERRUPTED, first_line, os_error_line, print_lines
from audify_batch.cli.explain import add_explain_parser, run_explain
from audify_batch.cli.export import add_export_parser, run_export
from audify_batch.cli.label import (
    MODEL_DEFAULT,
    MODEL_HELP,
    add_label_parser,
    add_segmenting_arguments,
    add_thresholds_argument,
    run_label,
    segmenting_from_args,
)
from audify_batch.cli.review import add_review_parsers, run_calibrate, run_head
from audify_batch.cli.serve import add_serve_parser, run_serve
from audify_batch.ingest.audio_io import AudioDecodeError
from audify_batch.ingest.sources import SourceError
from audify_batch.model.checkpoint import CheckpointError, load_checkpoint
from audify_batch.model.inference import (
    Precision,
    SegmentPrediction,
    classify_file,
    keep_batch_memory,
    prepare_for_inference,
)
from audify_batch.model.thresholds_file import apply_thresholds
from audify_batch.report.run_report import html_report
from audify_batch.store.query import format_table, run_sql, text_report

CLASSIFY_TOP_K = 3  # labels printed per segment by classify (label stores OutputConfig.top_k)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each option's default, unless there is none to show (None, a flag)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose help shows every option's default."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="audify", description="Label environmental sounds.")
    parser.add_argument("--version", action="version", version=f"audify-batch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    classify = commands.add_parser("classify", help="top-K labels for each segment of one file")
    classify.add_argument("file", type=Path, help="an audio file (anything libsndfile reads)")
    classify.add_argument(
        "--top-k", type=_positive_int, default=CLASSIFY_TOP_K, help="labels printed per segment"
    )
    add_segmenting_arguments(classify)
    classify.add_argument("--model", default=MODEL_DEFAULT, help=MODEL_HELP)
    add_thresholds_argument(classify)
    classify.add_argument(
        "--precision", choices=[p.value for p in Precision], default="auto", help="fp32, bf16, or auto"
    )
    add_label_parser(commands)
    query = commands.add_parser("query", help="run read-only DuckDB SQL over the views of OUT")
    query.add_argument("out", help="output root written by audify label (local or s3://)")
    query.add_argument("sql", help="SQL over the views segments, recordings, runs, labels, embeddings")
    query.add_argument("--max-rows", type=_positive_int, default=50, help="rows printed at most")
    report = commands.add_parser("report", help="a plain-text report of OUT (or HTML with --html)")
    report.add_argument("out", help="output root written by audify label (local or s3://)")
    report.add_argument("--html", type=Path, help="write a self-contained HTML report to this file")
    report.add_argument("--model", help="model partition (name-version); default: of the latest run")
    add_explain_parser(commands)
    add_serve_parser(commands)
    add_export_parser(commands)
    add_review_parsers(commands)
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse; an unknown option is reported with the usage of its subcommand, not the top level."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        subcommands.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def run_query(args: argparse.Namespace) -> int:
    if not args.sql.strip():
        raise ValueError("empty SQL: give a statement, e.g. 'SELECT count(*) FROM segments'")
    print_lines(format_table(run_sql(args.out, args.sql), max_rows=args.max_rows))
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
    """One segment: its span, what is detected (models with thresholds), the top labels of both
    vocabularies with their scores."""
    labels = "  ".join(
        f"{label} {conf:.3f}" for label, conf in zip(prediction.labels, prediction.confidences, strict=True)
    )
    line = f"{prediction.start_s:9.2f} {prediction.end_s:9.2f}  "
    if prediction.detected is not None:
        line += f"detected: {', '.join(prediction.detected) or '(nothing known)'} | "
    line += labels
    if prediction.audioset_labels:
        audioset = zip(prediction.audioset_labels, prediction.audioset_scores, strict=True)
        line += " | AudioSet: " + "  ".join(f"{label} {score:.3f}" for label, score in audioset)
    return line


def run_classify(args: argparse.Namespace) -> int:
    model, card = load_checkpoint(args.model)
    if args.thresholds is not None:
        card = apply_thresholds(card, args.thresholds)
    model = prepare_for_inference(model, torch.device("cpu"))
    keep_batch_memory(torch.device("cpu"))
    predictions = classify_file(
        model,
        card,
        args.file,
        k=args.top_k,
        segmenting=segmenting_from_args(args),
        precision=Precision(args.precision),
    )
    first = next(predictions, None)  # decode errors surface before any header is printed
    print_lines(
        f"# {args.file}  model {card.name} {card.version}",
        f"# {'start_s':>7} {'end_s':>9}  "
        + ("detected | " if card.thresholds else "")
        + f"top-{args.top_k} labels with confidences"
        + (" | AudioSet top labels with scores" if card.audioset_labels else ""),
    )
    for prediction in itertools.chain([first] if first else [], predictions):
        print_lines(format_prediction(prediction))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; errors are one line on stderr and an exit status (see ``EXIT_*``)."""
    args = parse_args(argv)
    commands = {
        "classify": run_classify,
        "label": run_label,
        "query": run_query,
        "report": run_report,
        "explain": run_explain,
        "serve": run_serve,
        "export": run_export,
        "calibrate": run_calibrate,
        "head": run_head,
    }
    try:
        return commands[args.command](args)
    except (
        AudioDecodeError,
        CheckpointError,
        SourceError,
        ValueError,
        duckdb.Error,
    ) as error:
        print(f"audify: error: {first_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:
        print(f"audify: error: {os_error_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("audify: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
