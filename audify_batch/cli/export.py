"""``audify export``: detections of OUT as Raven Pro selection tables, Audacity label tracks or a tidy CSV."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from audify_batch.cli.console import print_lines
from audify_batch.review.export import DEFAULT_DEST, FORMATS, ExportRequest, export


def add_export_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "export",
        help="detections of OUT as Raven selection tables, Audacity label tracks or a tidy CSV",
        description="Raven and Audacity get one file per recording, R and pandas one CSV. A detection is "
        "a row of the detections view (detected labels; top-1 for models without thresholds).",
    )
    parser.add_argument("out", help="output root written by audify label (local or s3://)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="raven, audacity or csv")
    parser.add_argument("--label", help="only this label")
    parser.add_argument("--min-score", type=float, help="only detections with confidence >= this (0 to 1)")
    parser.add_argument(
        "--events",
        action="store_true",
        help="merged events (runs of one label over consecutive segments; score: their max) instead",
    )
    parser.add_argument("--model", help="model partition (name-version); default: of the latest run")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="local folder for the files")


def run_export(args: argparse.Namespace) -> int:
    request = ExportRequest(
        out=args.out,
        format=args.format,
        dest=args.dest,
        model=args.model,
        label=args.label,
        min_score=args.min_score,
        events=args.events,
    )
    print_lines(export(request).summary(request))
    return 0
