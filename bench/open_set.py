"""An open-set check set: five-second segments that are not ESC-50 sounds.

``python -m bench.open_set --out DIR [--seed N] [--n-per-kind K]`` writes mono 16 kHz PCM_16
WAV files of exactly 5 s and ``manifest.csv`` (file, kind, params as JSON) into DIR, which
must be new or empty. They measure how often the labeler names an ESC-50 class where there
is none (the ``detected`` column should say "nothing known here").

Kinds, K each (default 34, so 9 x 34 = 306 files): digital silence or near-silence (TPDF
dither at -96..-80 dBFS), hiss (white noise at -60..-40 dBFS), coloured noise (white, pink or
brown, optionally low/high/band-pass filtered, at -40..-12 dBFS), pure tones (100-8000 Hz),
piano-like chords, tone sweeps, music (melody on a scale, bass line, kick and hi-hat on the
beat), DTMF digits or beeps, and synthetic speech from Debian's espeak-ng
(``apt-get install espeak-ng``; setup.sh installs it).

Deterministic: each file's generator is seeded from (seed, kind, index), so a seed gives
byte-identical files, and a file does not depend on K or on the other kinds. espeak-ng 1.51
gave byte-identical output across runs; its 22.05 kHz audio is resampled with soxr.

Some kinds sit near ESC-50 classes (stationary noise near rain, wind or sea waves; beeps near
clock_alarm; sweeps near siren; clicks near clock_tick), so report results per kind.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.open_set_sounds import DURATION_S, GENERATORS, SAMPLE_RATE_HZ, Params

__all__ = ["DURATION_S", "KINDS", "SAMPLE_RATE_HZ", "OpenSetItem", "build_open_set", "generate"]

DEFAULT_N_PER_KIND = 34
KINDS = ("silence", "hiss", "noise", "tone", "chord", "sweep", "music", "dtmf", "speech")
MANIFEST_NAME = "manifest.csv"


@dataclass(frozen=True)
class OpenSetItem:
    """One written file: its path, its kind and how it was made (JSON, keys sorted)."""

    path: Path
    kind: str
    params: str


def generate_with_params(
    kind: str, rng: np.random.Generator, sample_rate_hz: int = SAMPLE_RATE_HZ
) -> tuple[np.ndarray, Params]:
    """A 5 s float32 signal in [-1, 1] of ``kind`` and the parameters that made it."""
    if kind not in GENERATORS:
        raise ValueError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    if sample_rate_hz < SAMPLE_RATE_HZ:
        raise ValueError(f"sample_rate_hz must be at least {SAMPLE_RATE_HZ} (tones reach 8 kHz)")
    signal, params = GENERATORS[kind](rng, sample_rate_hz)
    return np.clip(signal, -1.0, 1.0).astype(np.float32), params


def generate(kind: str, rng: np.random.Generator, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """A 5 s float32 signal in [-1, 1] of ``kind``."""
    return generate_with_params(kind, rng, sample_rate_hz)[0]


def params_json(params: Params) -> str:
    """Params as compact JSON with sorted keys, floats to 4 decimals."""
    rounded = {key: round(value, 4) if isinstance(value, float) else value for key, value in params.items()}
    return json.dumps(rounded, sort_keys=True, separators=(",", ":"))


def to_pcm16(signal: np.ndarray) -> np.ndarray:
    return np.clip(np.round(signal.astype(np.float64) * 32767.0), -32768, 32767).astype(np.int16)


def build_open_set(
    out_dir: Path, seed: int = 0, n_per_kind: int = DEFAULT_N_PER_KIND, kinds: Sequence[str] = KINDS
) -> list[OpenSetItem]:
    """Write ``n_per_kind`` files of each kind and ``manifest.csv`` into ``out_dir`` (new or empty)."""
    if seed < 0 or n_per_kind < 1:
        raise ValueError("seed must be >= 0 and n_per_kind >= 1")
    if not kinds or len(set(kinds)) != len(kinds) or not set(kinds) <= set(KINDS):
        raise ValueError(f"kinds must be distinct, from: {', '.join(KINDS)}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} is not empty; the open set goes into a new or empty folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    items = []
    for kind in kinds:
        for index in range(n_per_kind):
            rng = np.random.default_rng([seed, KINDS.index(kind), index])
            signal, params = generate_with_params(kind, rng, SAMPLE_RATE_HZ)
            path = out_dir / f"{kind}_{index:03d}.wav"
            sf.write(path, to_pcm16(signal), SAMPLE_RATE_HZ, subtype="PCM_16", format="WAV")
            items.append(OpenSetItem(path=path, kind=kind, params=params_json(params)))
    with (out_dir / MANIFEST_NAME).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["file", "kind", "params"])
        writer.writerows([item.path.name, item.kind, item.params] for item in items)
    return items


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="a new or empty folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-per-kind", type=int, default=DEFAULT_N_PER_KIND)
    args = parser.parse_args(argv)
    started_s = time.perf_counter()
    try:
        items = build_open_set(args.out, args.seed, args.n_per_kind)
    except (ValueError, RuntimeError) as error:
        print(f"open_set: {error}", file=sys.stderr)
        return 2
    counts = Counter(item.kind for item in items)
    print(", ".join(f"{kind} {counts[kind]}" for kind in KINDS))
    print(f"{len(items)} files in {args.out} ({time.perf_counter() - started_s:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
