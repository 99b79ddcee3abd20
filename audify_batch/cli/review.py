"""``audify calibrate`` and ``audify head train|apply``: what reviewed segments teach."""

from __future__ import annotations

import argparse
from typing import Any

from audify_batch.cli.console import print_lines
from audify_batch.review.calibrate import (
    MIN_REVIEWS,
    calibrate,
    check_target,
    default_thresholds_path,
    format_calibration,
    save_threshold,
)
from audify_batch.review.head_apply import apply_head
from audify_batch.review.head_fit import L2_DEFAULT
from audify_batch.review.heads import (
    CARD_FILE,
    MAX_PRESUMED,
    PRESUMED_PER_POSITIVE,
    WEIGHTS_FILE,
    load_head,
    save_head,
    train_head,
)
from audify_batch.store.query import connect

OUT_HELP = "output root written by audify label (local or s3://)"


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_review_parsers(commands: Any) -> None:
    """``calibrate`` and ``head`` (with ``train`` and ``apply``)."""
    cal = commands.add_parser(
        "calibrate",
        help="precision per score bin of one label from reviewed segments, and the threshold for a target",
        description="From the verdicts on LABEL (audify serve), the precision of each score bin with a "
        "Wilson 95% interval, and the lowest threshold whose reviewed segments scoring at or above it "
        "reach --target-precision; that threshold is saved to a versioned JSON file.",
    )
    cal.add_argument("out", help=OUT_HELP)
    cal.add_argument("--label", help="the label reviewed (with --head: default the head's label)")
    cal.add_argument("--head", help="calibrate this custom head's scores instead of the model's confidences")
    cal.add_argument("--target-precision", type=float, default=0.9, help="precision the threshold must reach")
    cal.add_argument(
        "--model", help="model partition (name-version); default: the one with verdicts on LABEL"
    )
    cal.add_argument("--bins", type=_positive_int, default=10, help="equal-width score bins over 0..1")
    cal.add_argument(
        "--min-reviews",
        type=_positive_int,
        default=MIN_REVIEWS,
        help="reviewed segments a threshold rests on",
    )
    cal.add_argument(
        "--save", help="thresholds file to update (default: OUT/calibration/thresholds-MODEL.json)"
    )
    cal.add_argument("--no-save", action="store_true", help="print only; write no thresholds file")

    head = commands.add_parser(
        "head",
        help="custom heads: train one on reviewed segments' embeddings, apply it to every segment",
        description="A custom head scores stored embeddings (no audio decoded) for a label of your own.",
    )
    actions = head.add_subparsers(dest="head_command", required=True)
    train = actions.add_parser("train", help="train a head on the verdicts on its label")
    train.add_argument("out", help=OUT_HELP)
    train.add_argument("--name", required=True, help="the head's name (letters, digits, '_', '.', '-')")
    train.add_argument("--label", help="the label reviewed (default: NAME)")
    train.add_argument("--model", help="model partition (name-version); default: the one with verdicts on it")
    train.add_argument(
        "--presumed-per-positive",
        type=int,
        default=PRESUMED_PER_POSITIVE,
        help="unreviewed segments drawn per positive as presumed negatives",
    )
    train.add_argument("--max-presumed", type=int, default=MAX_PRESUMED, help="presumed negatives at most")
    train.add_argument("--folds", type=_positive_int, default=5, help="cross-validation folds (at most)")
    train.add_argument("--seed", type=int, default=0, help="seed of the draw and the folds")
    train.add_argument("--l2", type=float, default=L2_DEFAULT, help="L2 penalty on standardised weights")
    apply = actions.add_parser("apply", help="score every current segment of the head's model")
    apply.add_argument("out", help=OUT_HELP)
    apply.add_argument("--head", required=True, help="the head's name")
    apply.add_argument(
        "--cache",
        help="local folder caching the embeddings of segments parts written before audify-batch "
        "stored a float16 copy (embedding_f16), uncompressed (about their size on disk): the next "
        "apply reads them several times faster; parts with the copy are read directly",
    )


def run_calibrate(args: argparse.Namespace) -> int:
    check_target(args.target_precision)
    label, model = args.label, args.model
    if args.head:
        card, _ = load_head(args.out, args.head)
        label, model = label or card.label, model or card.model
    if not label:
        raise ValueError("give --label LABEL (or --head NAME for a custom head)")
    con = connect(args.out)
    try:
        result = calibrate(con, label, model, args.target_precision, args.bins, args.head, args.min_reviews)
    finally:
        con.close()
    print_lines(format_calibration(result))
    if result.threshold is not None and not args.no_save:
        path = args.save or default_thresholds_path(args.out, result.model)
        save_threshold(path, result)
        print_lines(f"saved to {path}")
    return 0


def run_head(args: argparse.Namespace) -> int:
    if args.head_command == "train":
        trained = train_head(
            args.out,
            args.name,
            label=args.label,
            model=args.model,
            presumed_per_positive=args.presumed_per_positive,
            max_presumed=args.max_presumed,
            folds=args.folds,
            seed=args.seed,
            l2=args.l2,
        )
        card, cv = trained.card, trained.cv
        folder = save_head(args.out, trained)
        print_lines(
            f"head {card.name} for {card.label!r} on model {card.model} ({card.embedding_dim}-d embeddings): "
            f"{card.n_present} present, {card.n_absent} absent, {card.n_presumed_negative} presumed negative",
            f"cross-validation ({cv.folds} folds): precision {cv.precision:.3f}, recall {cv.recall:.3f} at "
            f"score 0.5; average precision {cv.average_precision:.3f}",
            f"saved {folder}/ ({WEIGHTS_FILE}, {CARD_FILE}); "
            f"next: audify head apply {args.out} --head {card.name}",
        )
        return 0
    result = apply_head(args.out, args.head, cache_dir=args.cache)
    print_lines(
        f"head {result.head}: scored {result.n_segments} segments of model {result.model} in "
        f"{result.wall_s:.1f} s ({result.segments_per_s:,.0f} segments/s) into "
        f"head_scores/head={result.head}/ (score files: {result.n_parts}; "
        f"files of earlier applies removed: {result.n_removed})"
    )
    return 0
