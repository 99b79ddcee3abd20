"""Open-set check: how often the model says "nothing known here" where nothing known is.

Builds the generated open set (bench/open_set.py, seed 0; the thresholds and the known-sound
gate were fitted on seeds 1-5), labels it with ``audify label`` as a user would, and prints,
per kind and overall, the share of segments whose ``detected`` is empty, and what was detected
where it was not. With ``--oof``, also the share of ESC-50 clips whose true class is in
``detected`` (out-of-fold class scores, as in the model card).

    PYTHONPATH=. .venv/bin/python bench/bench_open_set.py --model default --oof runs/yamnet-ft/cv-v2/oof.npz
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from audify_batch.cli.main import main as audify
from audify_batch.model.checkpoint import load_checkpoint, read_card
from audify_batch.store.query import connect
from bench.open_set import build_open_set


def label_open_set(model: str, work: Path, seed: int) -> list[tuple[str, int, int, str]]:
    """(kind, segments, segments with empty detected, most detected labels) per kind."""
    items = build_open_set(work / "open-set", seed=seed)
    out = work / "out"
    status = audify(["label", str(work / "open-set"), "--out", str(out), "--model", model])
    if status != 0:
        raise SystemExit(f"audify label exited {status}")
    kinds = {item.path.name: item.kind for item in items}
    con = connect(str(out))
    rows = con.execute("SELECT uri, detected FROM segments").fetchall()
    per_kind: dict[str, list[list[str]]] = {}
    for uri, detected in rows:
        per_kind.setdefault(kinds[Path(uri).name], []).append(detected or [])
    result = []
    for kind, detections in sorted(per_kind.items()):
        labels = [label for d in detections for label in d]
        common = ", ".join(
            f"{lab} {labels.count(lab)}" for lab in sorted(set(labels), key=labels.count)[::-1][:3]
        )
        result.append((kind, len(detections), sum(not d for d in detections), common))
    return result


def oof_recall(model: str, oof_path: Path) -> float:
    """Share of ESC-50 clips whose true class is in ``detected``: out-of-fold class scores and
    this model's AudioSet scores, through the card's whole rule (thresholds and the known-sound
    gate). The shipped gate was fitted on these clips; the card's ``thresholds_fit`` has the
    figure with each clip's gate fitted without its fold."""
    import torch

    from audify_batch.model.inference import BatchScores, Precision, detect
    from training.data import SHARED_DATA, load_dataset
    from training.thresholds import score_waveforms
    from training.yamnet_features import load_waveforms

    network, card = load_checkpoint(model)
    oof = np.load(oof_path)
    scores, targets = oof["scores"], oof["targets"]
    dataset = load_dataset(SHARED_DATA / "esc50")
    if not np.array_equal(dataset.targets(), targets):
        raise SystemExit(f"{oof_path} is not in ESC-50's clip order")
    audioset = None
    if card.known_gate is not None or card.abstain_audioset:
        clips = load_waveforms(dataset.clips)
        audioset = torch.from_numpy(score_waveforms(network, clips, Precision.BF16).audioset)
    batch = BatchScores(torch.from_numpy(scores).float(), torch.zeros(len(scores), 1), audioset)
    detected = detect(batch, card).numpy()
    return float(np.mean(detected[np.arange(len(scores)), targets]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="default, fast or a checkpoint folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--oof", type=Path, help="out-of-fold ESC-50 scores (npz: scores, targets)")
    args = parser.parse_args()
    if not read_card(args.model).thresholds:
        raise SystemExit(f"model {args.model} has no thresholds: it detects nothing")
    with tempfile.TemporaryDirectory() as tmp:
        rows = label_open_set(args.model, Path(tmp), args.seed)
    print(f"{'kind':<10} {'segments':>8} {'empty detected':>15}  most detected")
    for kind, n, empty, common in rows:
        print(f"{kind:<10} {n:>8} {empty / n:>15.1%}  {common}")
    total, empty_total = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'all':<10} {total:>8} {empty_total / total:>15.1%}")
    if args.oof:
        print(f"ESC-50 out-of-fold: true class detected for {oof_recall(args.model, args.oof):.1%} of clips")


if __name__ == "__main__":
    main()
