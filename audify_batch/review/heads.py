"""Your own sounds: custom heads trained on stored embeddings from reviewers' verdicts
(``audify head train``; ``head_apply`` scores every segment with one).

A head for label L of model M learns from M's embeddings of the current segments reviewed for L
(``present``: positives, ``absent``: negatives) plus a seeded sample of segments nobody reviewed
for L, presumed negative (5 per positive by default, at most 10,000): a logistic regression
(``head_fit``), cross-validated before the final fit on everything. It is saved under
``OUT/heads/<NAME>/`` (OUT local or ``s3://``): ``head.safetensors`` (``weight`` (D,), ``bias``
(1,), float32) first, then ``card.json``, its commit record; both carry the head's version, and
a head whose two files disagree (a save cut short) does not load.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from audify_batch.review.head_fit import (
    L2_DEFAULT,
    CrossValidation,
    LinearHead,
    check_classes,
    cross_validate,
    fit_logistic,
)
from audify_batch.store import schema as S
from audify_batch.store.query import connect, fetch_file, normalize_out, read_sql, set_params
from audify_batch.store.sink import write_bytes_atomic

HEADS = "heads"  # folder under OUT
HEAD_FORMAT = "audify-head"
HEAD_FORMAT_VERSION = 1
WEIGHTS_FILE = "head.safetensors"
CARD_FILE = "card.json"
PRESUMED_PER_POSITIVE = 5
MAX_PRESUMED = 10_000
_HEAD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_head_name(name: str) -> str:
    if not _HEAD_NAME.fullmatch(name):
        raise ValueError(
            f"a head's name is 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit, "
            f"got {name!r} (train on a label with spaces with --label)"
        )
    return name


@dataclass(frozen=True)
class HeadCard:
    """What a head is: its label, the embeddings it reads, what it learned from, how well it did."""

    name: str
    label: str
    model: str  # the model partition whose embeddings it scores, '<name>-<version>'
    model_name: str
    model_version: str
    embedding_dim: int
    head_version: str  # unique per training: '<UTC time>-<random>'
    created_at: str  # ISO 8601, UTC
    n_present: int
    n_absent: int
    n_presumed_negative: int
    annotation_ids: tuple[str, ...]  # the verdicts it was trained on
    cv: dict[str, Any]  # CrossValidation as a dict
    l2: float = L2_DEFAULT
    seed: int = 0
    labels: tuple[str, ...] = ()  # the labels it scores: (label,)
    format: str = HEAD_FORMAT
    format_version: int = HEAD_FORMAT_VERSION

    def __post_init__(self) -> None:
        check_head_name(self.name)
        if self.format != HEAD_FORMAT or self.format_version != HEAD_FORMAT_VERSION:
            raise ValueError(
                f"head {self.name}: format {self.format!r} version {self.format_version}, "
                f"this audify reads {HEAD_FORMAT!r} version {HEAD_FORMAT_VERSION}"
            )
        if not self.labels:
            object.__setattr__(self, "labels", (self.label,))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> HeadCard:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a head card is a JSON object")
        data["annotation_ids"] = tuple(data.get("annotation_ids", ()))
        data["labels"] = tuple(data.get("labels", ()))
        try:
            return cls(**data)
        except TypeError as error:  # fields missing or unknown: another format version
            raise ValueError(f"head card of another layout ({error})") from error


@dataclass(frozen=True)
class TrainingSet:
    x: np.ndarray  # (N, D) float32
    y: np.ndarray  # (N,) int64: 1 present, 0 absent or presumed negative
    annotation_ids: tuple[str, ...]
    n_present: int
    n_absent: int
    n_presumed_negative: int
    model_name: str
    model_version: str


@dataclass(frozen=True)
class TrainedHead:
    card: HeadCard
    head: LinearHead
    cv: CrossValidation = field(repr=False)


def head_folder(out: str | os.PathLike[str], name: str) -> str:
    return posixpath.join(normalize_out(out), HEADS, check_head_name(name))


def save_head(
    out: str | os.PathLike[str], trained: TrainedHead, storage_options: dict[str, Any] | None = None
) -> str:
    """Write the head under ``OUT/heads/<NAME>/`` (weights, then the card); returns the folder."""
    card, head = trained.card, trained.head
    folder = head_folder(out, card.name)
    fs, root = url_to_fs(folder, **(storage_options or {}))
    tensors = {"weight": head.weight, "bias": np.array([head.bias], dtype=np.float32)}
    metadata = {"format": HEAD_FORMAT, "head_version": card.head_version}
    write_bytes_atomic(fs, posixpath.join(root, WEIGHTS_FILE), save_tensors(tensors, metadata=metadata))
    write_bytes_atomic(fs, posixpath.join(root, CARD_FILE), card.to_json().encode())
    return folder


def load_head(
    out: str | os.PathLike[str], name: str, storage_options: dict[str, Any] | None = None
) -> tuple[HeadCard, LinearHead]:
    """The head ``name`` of OUT: its card and weights (ValueError when missing or inconsistent)."""
    fs, root = url_to_fs(head_folder(out, name), **(storage_options or {}))
    card_path, weights_path = posixpath.join(root, CARD_FILE), posixpath.join(root, WEIGHTS_FILE)
    if not fs.exists(card_path) or not fs.exists(weights_path):
        raise ValueError(f"no custom head {name!r} in {normalize_out(out)}: train it with audify head train")
    with fs.open(card_path, "rb") as handle:
        card = HeadCard.from_json(handle.read().decode())
    with fs.open(weights_path, "rb") as handle:
        data = handle.read()
    tensors = load_tensors(data)
    stored_version = _safetensors_metadata(data).get("head_version")
    if stored_version != card.head_version:
        raise ValueError(
            f"head {name}: its weights ({stored_version}) and card ({card.head_version}) differ: "
            "train it again"
        )
    weight = tensors["weight"].astype(np.float32)
    if weight.shape != (card.embedding_dim,):
        raise ValueError(f"head {name}: weight of shape {weight.shape}, its card says {card.embedding_dim}-d")
    return card, LinearHead(weight, float(tensors["bias"][0]))


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    return dict(header.get("__metadata__", {}))


def resolve_model(con: duckdb.DuckDBPyConnection, label: str, model: str | None) -> str:
    """``model``, or the one model with verdicts on ``label``, or the model of the latest run."""
    if model:
        return model
    models = [str(m) for m in fetch_file(con, "calibration_models", {"label": label}).column("model")]
    if len(models) > 1:
        raise ValueError(
            f"label {label!r} has verdicts for {len(models)} models ({', '.join(models)}): "
            "pick one with --model"
        )
    if models:
        return models[0]
    latest = fetch_file(con, "report_latest_model").column("model")
    if not latest:
        raise ValueError("OUT has no runs yet: label an archive first (audify label)")
    return str(latest[0])


def model_embedding_dim(
    out: str | os.PathLike[str], model: str, storage_options: dict[str, Any] | None = None
) -> int:
    """D of ``model``'s stored embeddings, from the schema of one of its committed segments parts."""
    fs, root = url_to_fs(normalize_out(out), **(storage_options or {}))
    folder = f"{S.MODEL_PARTITION}={model}"
    for path in sorted(fs.glob(posixpath.join(root, S.SEGMENTS, folder, "part-*.parquet"))):
        if not fs.exists(path.replace(f"/{S.SEGMENTS}/{folder}/", f"/{S.RECORDINGS}/{folder}/")):
            continue  # debris of a killed run
        with fs.open(path, "rb") as handle:
            kind = pq.read_schema(handle).field(S.EMBEDDING).type
        if isinstance(kind, pa.FixedSizeListType):
            return int(kind.list_size)
        with fs.open(path, "rb") as handle:
            return len(pq.ParquetFile(handle).read_row_group(0, columns=[S.EMBEDDING])[0][0])
    raise ValueError(f"model {model} has no segments in {normalize_out(out)}")


def fetch_arrow(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any]) -> pa.Table:
    """``sql/<name>.sql`` as an Arrow table (embeddings stay FixedSizeList: no Python objects)."""
    set_params(con, params)
    try:
        return con.sql(read_sql(name)).to_arrow_table()
    finally:
        set_params(con, dict.fromkeys(params))


def training_set(
    con: duckdb.DuckDBPyConnection,
    model: str,
    label: str,
    presumed_per_positive: int = PRESUMED_PER_POSITIVE,
    max_presumed: int = MAX_PRESUMED,
    seed: int = 0,
) -> TrainingSet:
    """The reviewed segments of ``label`` in ``model`` and the presumed negatives, with embeddings
    (the connection's views must be built for ``model``'s embedding length)."""
    params = {"model": model, "label": label, "presumed_per_positive": presumed_per_positive}
    keys = fetch_arrow(con, "head_training_keys", params | {"max_presumed": max_presumed, "seed": seed})
    if keys.num_rows == 0:
        raise ValueError(f"no reviewed segments of label {label!r} for model {model}: review some first")
    wanted = {"model": model, "recording_ids": keys[S.RECORDING_ID].to_pylist()}
    wanted["segment_indexes"] = keys[S.SEGMENT_INDEX].to_pylist()
    embeddings = fetch_arrow(con, "head_embeddings", wanted)
    if embeddings.num_rows != keys.num_rows:
        raise ValueError(f"found {embeddings.num_rows} embeddings for {keys.num_rows} training segments")
    # Both are ordered by (recording_id, segment_index): the rows line up.
    x = embeddings[S.EMBEDDING].combine_chunks().flatten().to_numpy().reshape(keys.num_rows, -1)
    present = np.asarray(keys["present"].to_numpy(zero_copy_only=False), dtype=bool)
    ids = [i for i in keys["annotation_id"].to_pylist() if i is not None]
    n_reviewed = len(ids)
    return TrainingSet(
        x=np.ascontiguousarray(x, dtype=np.float32),
        y=present.astype(np.int64),
        annotation_ids=tuple(sorted(ids)),
        n_present=int(present.sum()),
        n_absent=n_reviewed - int(present.sum()),
        n_presumed_negative=keys.num_rows - n_reviewed,
        model_name=str(keys["model_name"][0]),
        model_version=str(keys["model_version"][0]),
    )


def train_head(
    out: str | os.PathLike[str],
    name: str,
    label: str | None = None,
    model: str | None = None,
    presumed_per_positive: int = PRESUMED_PER_POSITIVE,
    max_presumed: int = MAX_PRESUMED,
    folds: int = 5,
    seed: int = 0,
    l2: float = L2_DEFAULT,
    storage_options: dict[str, Any] | None = None,
) -> TrainedHead:
    """Train head ``name`` on the verdicts on ``label`` (default: ``name``); does not save it."""
    check_head_name(name)
    label = label or name
    if presumed_per_positive < 0 or max_presumed < 0:
        raise ValueError("the presumed negatives per positive and their maximum must be >= 0")
    con = connect(out)
    try:
        model = resolve_model(con, label, model)
    finally:
        con.close()
    dim = model_embedding_dim(out, model, storage_options)
    con = connect(out, embedding_dim=dim)
    try:
        data = training_set(con, model, label, presumed_per_positive, max_presumed, seed)
    finally:
        con.close()
    check_classes(data.y)
    cv = cross_validate(data.x, data.y, folds=folds, seed=seed, l2=l2)
    head = fit_logistic(data.x, data.y, l2)
    now = datetime.now(UTC)
    card = HeadCard(
        name=name,
        label=label,
        model=model,
        model_name=data.model_name,
        model_version=data.model_version,
        embedding_dim=dim,
        head_version=now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:6],
        created_at=now.isoformat(timespec="seconds"),
        n_present=data.n_present,
        n_absent=data.n_absent,
        n_presumed_negative=data.n_presumed_negative,
        annotation_ids=data.annotation_ids,
        cv=asdict(cv),
        l2=l2,
        seed=seed,
    )
    return TrainedHead(card, head, cv)
