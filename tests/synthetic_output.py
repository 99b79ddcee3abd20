"""A small but realistic OUT folder, written with pyarrow and the schemas of ``audify_batch.store.schema``.

The story, for model M1 (``audify-esc50-resnet`` 1.0.0):

- RUN1 labels A, B, D and E and fails on C, in two parts.
- RUN2 skips B (unchanged), fails on C again, relabels D (changed: other
  segments and labels) and fails on E (changed, now unreadable).
- RUN3 was killed: it committed part 0 (G labeled) and left part 1 as debris, a
  segments part without its recordings part (segments for A and a copy of
  G's rows); it never wrote its runs row.

Model M2 (the same name, version 1.1.0) labels A and B in RUN4 with other
labels.

B's segment 1 is a near-duplicate of A's segment 2 in M1, and B's segment 0 of
A's segment 2 in M2. B's segment 2 in M2 carries exactly M1's embedding of A's
segment 2 (when the dims agree), so a similarity query that mixed the models
would put it first. B's top label is ``o'clock``; E's URI has a quote too.
"""

from __future__ import annotations

import functools
import hashlib
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from audify_batch.store import schema as S
from audify_batch.store import segments_file as SF

MODEL_NAME = "audify-esc50-resnet"
M1_VERSION = "1.0.0"
M2_VERSION = "1.1.0"
M1 = f"{MODEL_NAME}-{M1_VERSION}"
M2 = f"{MODEL_NAME}-{M2_VERSION}"

URI_A = "file:///archive/site1/a.wav"
URI_B = "file:///archive/site1/b.wav"
URI_C = "file:///archive/site1/c.wav"
URI_D = "file:///archive/site2/d.wav"
URI_E = "file:///archive/site2/bob's day.wav"
URI_G = "file:///archive/site2/g.flac"

RUN1 = "20240501T100000Z-1a2b"
RUN2 = "20240502T100000Z-3c4d"
RUN3 = "20240503T100000Z-5e6f"
RUN4 = "20240504T100000Z-7a8b"

QUOTE_LABEL = "o'clock"
VOCAB = ("dog", "rain", "wind", QUOTE_LABEL, "crackling_fire")
SAMPLE_RATE_HZ = 16_000
SEGMENT_S = 1.0
ERROR_C1 = "could not decode: unexpected end of file"
ERROR_C2 = "could not decode: unexpected end of file (retry)"
ERROR_E = "unsupported format: 'bob's day.wav' is not audio"
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)

# Top-1 label and confidence of each segment, per (model, uri, run).
A_M1 = [
    ("dog", 0.9),
    ("dog", 0.8),
    ("rain", 0.7),
    ("rain", 0.6),
    ("rain", 0.95),
    ("rain", 0.5),
    ("dog", 0.85),
]
B_M1 = [(QUOTE_LABEL, 0.9), (QUOTE_LABEL, 0.7), ("wind", 0.6)]
D_RUN1 = [("wind", 0.8), ("wind", 0.7), ("wind", 0.9)]
D_RUN2 = [("crackling_fire", 0.8), ("crackling_fire", 0.75)]
E_RUN1 = [("dog", 0.6), ("dog", 0.65)]
G_RUN3 = [("rain", 0.55), ("wind", 0.65)]
ORPHAN_A = [("crackling_fire", 0.99)] * 7
A_M2 = [("wind", 0.6)] * 7
B_M2 = [("rain", 0.7), ("rain", 0.72), ("rain", 0.74)]


@dataclass(frozen=True)
class SyntheticOutput:
    out: Path
    embedding_dims: dict[str, int]


def recording_id(uri: str) -> str:
    """As the pipeline computes it: stable per URI, the same before and after a change."""
    return hashlib.sha1(uri.encode()).hexdigest()[:16]


def top3(label: str, confidence: float) -> tuple[list[str], list[float]]:
    """Top-3 labels: the given one, then the next two of VOCAB (cyclic), with lower confidences."""
    i = VOCAB.index(label)
    rest = 1.0 - confidence
    return [label, VOCAB[(i + 1) % len(VOCAB)], VOCAB[(i + 2) % len(VOCAB)]], [
        confidence,
        rest * 0.6,
        rest * 0.3,
    ]


def vector(key: str, dim: int) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(key.encode())).standard_normal(dim).astype(np.float32)


def near(v: np.ndarray, key: str) -> np.ndarray:
    return (v + 0.01 * vector(key, len(v))).astype(np.float32)


@dataclass
class Rec:
    """One recordings row (and its segments when labeled) of a synthetic run."""

    uri: str
    status: str
    tops: list[tuple[str, float]] | None = None
    error: str | None = None
    fingerprint: str = "fp1"
    embeddings: dict[int, np.ndarray] | None = None


def segments_table(model: str, run_id: str, recs: list[Rec], dim: int) -> pa.Table:
    rows = []
    for rec in recs:
        for i, (label, conf) in enumerate(rec.tops or []):
            labels, confs = top3(label, conf)
            emb = (rec.embeddings or {}).get(i)
            rows.append(
                {
                    S.RECORDING_ID: recording_id(rec.uri),
                    S.URI: rec.uri,
                    S.SEGMENT_INDEX: i,
                    S.START_S: i * SEGMENT_S,
                    S.END_S: (i + 1) * SEGMENT_S,
                    S.START_SAMPLE: int(i * SEGMENT_S * SAMPLE_RATE_HZ),
                    S.END_SAMPLE: int((i + 1) * SEGMENT_S * SAMPLE_RATE_HZ),
                    S.LABELS: labels,
                    S.CONFIDENCES: confs,
                    S.EMBEDDING: (emb if emb is not None else vector(f"{model}|{run_id}|{rec.uri}|{i}", dim)),
                    S.MODEL_NAME: MODEL_NAME,
                    S.MODEL_VERSION: model.removeprefix(f"{MODEL_NAME}-"),
                    S.CONFIG_HASH: "cfg-" + model,
                    S.RUN_ID: run_id,
                }
            )
    return pa.Table.from_pylist(rows, schema=S.segments_schema(dim))


def recordings_table(model: str, run_id: str, recs: list[Rec], finished_at: datetime) -> pa.Table:
    rows = []
    for j, rec in enumerate(recs):
        labeled = rec.status == S.STATUS_LABELED
        n = len(rec.tops or []) if labeled else 0
        rows.append(
            {
                S.RECORDING_ID: recording_id(rec.uri),
                S.URI: rec.uri,
                S.SIZE_BYTES: 1000 + len(rec.uri),
                S.MTIME_S: 1.7e9,
                S.FINGERPRINT: rec.fingerprint if rec.status != S.STATUS_SKIPPED else None,
                S.SAMPLE_RATE_HZ: SAMPLE_RATE_HZ if labeled else None,
                S.CHANNELS: 1 if labeled else None,
                S.DURATION_S: n * SEGMENT_S if labeled else None,
                S.N_SEGMENTS: n,
                S.STATUS: rec.status,
                S.ERROR: rec.error,
                S.MODEL_NAME: MODEL_NAME,
                S.MODEL_VERSION: model.removeprefix(f"{MODEL_NAME}-"),
                S.CONFIG_HASH: "cfg-" + model,
                S.RUN_ID: run_id,
                S.FINISHED_AT: finished_at + timedelta(seconds=j),
            }
        )
    return pa.Table.from_pylist(rows, schema=S.RECORDINGS_SCHEMA)


def write_part(
    out: Path,
    model: str,
    run_id: str,
    seq: int,
    recs: list[Rec],
    dim: int,
    at: datetime,
    commit: bool = True,
    legacy: bool = False,
) -> None:
    """Segments first (only when there are rows, like the sink), then the recordings commit record.
    The segments file is laid out as the sink lays it out (``store/segments_file.py``) or, with
    ``legacy``, as parts were written before ``embedding_f16`` existed."""
    name = f"part-{run_id}-{seq:05d}.parquet"
    partition = f"{S.MODEL_PARTITION}={model}"
    segments = segments_table(model, run_id, recs, dim)
    if segments.num_rows:
        path = out / S.SEGMENTS / partition / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if legacy:
            pq.write_table(segments, path)
        else:
            segments = SF.with_embedding_f16(segments)
            pq.write_table(segments, path, **SF.write_options(segments.schema))
    if commit:
        path = out / S.RECORDINGS / partition / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(recordings_table(model, run_id, recs, at), path)


def write_run(out: Path, model: str, run_id: str, started: datetime, recs: list[Rec]) -> None:
    counts = {
        s: sum(r.status == s for r in recs) for s in (S.STATUS_LABELED, S.STATUS_FAILED, S.STATUS_SKIPPED)
    }
    labeled = [r for r in recs if r.status == S.STATUS_LABELED]
    row = {
        S.RUN_ID: run_id,
        S.STARTED_AT: started,
        S.FINISHED_AT: started + timedelta(minutes=5),
        S.RUN_STATUS: S.RUN_COMPLETED,
        S.CONFIG_JSON: '{"segment_s": 1.0}',
        S.CONFIG_HASH: "cfg-" + model,
        S.MODEL_NAME: MODEL_NAME,
        S.MODEL_VERSION: model.removeprefix(f"{MODEL_NAME}-"),
        S.N_RECORDINGS: len(recs),
        S.N_LABELED: counts[S.STATUS_LABELED],
        S.N_FAILED: counts[S.STATUS_FAILED],
        S.N_SKIPPED: counts[S.STATUS_SKIPPED],
        S.N_SEGMENTS: sum(len(r.tops or []) for r in labeled),
        S.AUDIO_S: sum(len(r.tops or []) * SEGMENT_S for r in labeled),
        S.WALL_S: 300.0,
    }
    path = out / S.RUNS / f"{S.MODEL_PARTITION}={model}" / f"run-{run_id}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([row], schema=S.RUNS_SCHEMA), path)


def write_synthetic_output(
    out: Path, m1_dim: int = 8, m2_dim: int = 8, legacy: bool = False
) -> SyntheticOutput:
    """Write the story of the module docstring under ``out``; returns where and the embedding dims.
    ``legacy``: segments parts as written before ``embedding_f16`` existed."""
    part = functools.partial(write_part, legacy=legacy)
    a2 = vector("A2", m1_dim)
    a2_m2 = vector("A2-M2", m2_dim)
    b_m2 = {0: near(a2_m2, "B0-M2")} | ({2: a2} if m2_dim == m1_dim else {})
    day = timedelta(days=1)

    run1 = [
        Rec(URI_A, S.STATUS_LABELED, A_M1, embeddings={2: a2}),
        Rec(URI_B, S.STATUS_LABELED, B_M1, embeddings={1: near(a2, "B1")}),
        Rec(URI_C, S.STATUS_FAILED, error=ERROR_C1),
        Rec(URI_D, S.STATUS_LABELED, D_RUN1),
        Rec(URI_E, S.STATUS_LABELED, E_RUN1),
    ]
    part(out, M1, RUN1, 0, run1[:3], m1_dim, T0 + timedelta(minutes=1))
    part(out, M1, RUN1, 1, run1[3:], m1_dim, T0 + timedelta(minutes=2))
    write_run(out, M1, RUN1, T0, run1)

    run2 = [
        Rec(URI_B, S.STATUS_SKIPPED),
        Rec(URI_C, S.STATUS_FAILED, error=ERROR_C2),
        Rec(URI_D, S.STATUS_LABELED, D_RUN2, fingerprint="fp2"),
        Rec(URI_E, S.STATUS_FAILED, error=ERROR_E, fingerprint="fp2"),
    ]
    part(out, M1, RUN2, 0, run2[:1], m1_dim, T0 + day)  # skipped only: no segments part
    part(out, M1, RUN2, 1, run2[1:], m1_dim, T0 + day + timedelta(minutes=1))
    write_run(out, M1, RUN2, T0 + day, run2)

    part(out, M1, RUN3, 0, [Rec(URI_G, S.STATUS_LABELED, G_RUN3)], m1_dim, T0 + 2 * day)
    debris = [Rec(URI_A, S.STATUS_LABELED, ORPHAN_A), Rec(URI_G, S.STATUS_LABELED, G_RUN3)]
    part(out, M1, RUN3, 1, debris, m1_dim, T0 + 2 * day, commit=False)

    run4 = [
        Rec(URI_A, S.STATUS_LABELED, A_M2, embeddings={2: a2_m2}),
        Rec(URI_B, S.STATUS_LABELED, B_M2, embeddings=b_m2),
    ]
    part(out, M2, RUN4, 0, run4, m2_dim, T0 + 3 * day)
    write_run(out, M2, RUN4, T0 + 3 * day, run4)
    return SyntheticOutput(out, {M1: m1_dim, M2: m2_dim})


def write_failed_only_output(out: Path) -> SyntheticOutput:
    """One run of M1 in which every recording failed: no segments folder at all."""
    recs = [Rec(URI_A, S.STATUS_FAILED, error=ERROR_C1), Rec(URI_E, S.STATUS_FAILED, error=ERROR_E)]
    write_part(out, M1, RUN1, 0, recs, 8, T0 + timedelta(minutes=1))
    write_run(out, M1, RUN1, T0, recs)
    return SyntheticOutput(out, {})
