"""ESC-50 on disk: metadata, checks, and log-mels computed once per run."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audify_batch.ingest.audio_io import read_mono
from audify_batch.model.features import FrontendConfig, LogMel

# The data beside the repository (never committed): ESC-50 and the 44.1 kHz sets made from it.
# tests/ and bench/ take the path from here.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_ESC50_ROOT = SHARED_DATA / "esc50"
ESC50_N_CLASSES = 50
ESC50_FOLDS = (1, 2, 3, 4, 5)
ESC50_LICENCE = (
    "ESC-50 by Karol J. Piczak, CC BY-NC 3.0 (non-commercial); "
    "K. J. Piczak, 'ESC: Dataset for Environmental Sound Classification', ACM MM 2015"
)


class DatasetError(Exception):
    """The dataset is missing or incomplete; the message says what is wrong."""


@dataclass(frozen=True)
class Clip:
    path: Path
    fold: int
    target: int
    category: str


@dataclass(frozen=True)
class Dataset:
    clips: tuple[Clip, ...]
    labels: tuple[str, ...]

    def folds(self) -> np.ndarray:
        return np.array([clip.fold for clip in self.clips])

    def targets(self) -> np.ndarray:
        return np.array([clip.target for clip in self.clips])


def _read_rows(csv_path: Path) -> list[dict[str, str]]:
    if not csv_path.is_file():
        raise DatasetError(f"metadata file not found: {csv_path}")
    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    needed = {"filename", "fold", "target", "category"}
    if not rows or not needed <= set(rows[0]):
        raise DatasetError(f"{csv_path} lacks the columns {sorted(needed)}")
    return rows


def _labels(rows: list[dict[str, str]]) -> tuple[str, ...]:
    """Class names by index; an index no row uses is named ``class_<i>``."""
    by_target: dict[int, str] = {}
    for row in rows:
        by_target.setdefault(int(row["target"]), row["category"])
    return tuple(by_target.get(i, f"class_{i}") for i in range(max(by_target) + 1))


def load_dataset(
    root: Path,
    csv_name: str = "meta/esc50.csv",
    audio_dir: str = "audio",
    expect_full: bool = True,
) -> Dataset:
    """Read and check ESC-50 metadata; every listed file must exist."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root} (pass --data)")
    csv_path = root / csv_name
    rows = _read_rows(csv_path)
    labels = _labels(rows)
    clips = tuple(
        Clip(root / audio_dir / row["filename"], int(row["fold"]), int(row["target"]), row["category"])
        for row in rows
    )
    missing = [str(clip.path) for clip in clips if not clip.path.is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} of {len(clips)} audio files listed in {csv_path} are missing, e.g. {missing[0]}"
        )
    if expect_full:
        _check_complete(clips, labels, csv_path)
    return Dataset(clips, labels)


def _check_complete(clips: tuple[Clip, ...], labels: tuple[str, ...], csv_path: Path) -> None:
    if len(labels) != ESC50_N_CLASSES:
        raise DatasetError(f"{csv_path}: {len(labels)} classes, ESC-50 has {ESC50_N_CLASSES}")
    folds = sorted({clip.fold for clip in clips})
    if tuple(folds) != ESC50_FOLDS:
        raise DatasetError(f"{csv_path}: folds {folds}, ESC-50 has {list(ESC50_FOLDS)}")
    if len(clips) != 2000:
        raise DatasetError(f"{csv_path}: {len(clips)} clips, ESC-50 has 2000")


def clip_waveform(path: Path, frontend: FrontendConfig, segment_s: float) -> np.ndarray:
    """Decode, downmix and resample one clip; pad or cut to exactly one model window."""
    n_samples = round(segment_s * frontend.sample_rate_hz)
    samples = read_mono(path, frontend.sample_rate_hz)[:n_samples]
    return np.pad(samples, (0, n_samples - len(samples)))


@torch.inference_mode()
def compute_log_mels(
    clips: tuple[Clip, ...], frontend: FrontendConfig, segment_s: float, batch_size: int = 64
) -> torch.Tensor:
    """Log-mels (N, n_mels, frames) of all clips, computed once."""
    logmel = LogMel(frontend)
    out = []
    for start in range(0, len(clips), batch_size):
        batch = [clip_waveform(clip.path, frontend, segment_s) for clip in clips[start : start + batch_size]]
        out.append(logmel(torch.from_numpy(np.stack(batch))))
    return torch.cat(out)
