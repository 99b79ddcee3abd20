"""Calibrated thresholds files: per-class thresholds a reviewer chose (``audify calibrate``) that
replace a model card's own for the labels they name, so ``detected`` means what the reviews say.

The file is versioned JSON: ``{"format": "audify-thresholds", "version": 1, "model":
"<name>-<version>", "thresholds": {label: {"threshold": t, ...}}, "heads": {...}}``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from fsspec.core import url_to_fs

from audify_batch.model.checkpoint import ModelCard

THRESHOLDS_FORMAT = "audify-thresholds"
THRESHOLDS_VERSION = 1


def read_json(path: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    fs, local = url_to_fs(path, **(storage_options or {}))
    if not fs.exists(local):
        return None
    with fs.open(local, "r", encoding="utf-8") as handle:
        data = json.load(handle)
    return data if isinstance(data, dict) else {}


def read_thresholds(path: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """A thresholds file, checked: its format, version and model."""
    data = read_json(path, storage_options)
    if data is None:
        raise FileNotFoundError(f"no thresholds file {path}")
    if data.get("format") != THRESHOLDS_FORMAT or data.get("version") != THRESHOLDS_VERSION:
        raise ValueError(
            f"{path} is not an {THRESHOLDS_FORMAT} file of version {THRESHOLDS_VERSION} "
            f"(format {data.get('format')!r}, version {data.get('version')!r})"
        )
    if not isinstance(data.get("model"), str) or not isinstance(data.get("thresholds"), dict):
        raise ValueError(f"{path}: a thresholds file names its model and holds a 'thresholds' object")
    for section in ("thresholds", "heads"):
        for name, entry in (data.get(section) or {}).items():
            value = entry.get("threshold") if isinstance(entry, dict) else None
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{path}: {section}.{name} needs a 'threshold' from 0 to 1, got {entry!r}")
    return data


def apply_thresholds(card: ModelCard, path: str, storage_options: dict[str, Any] | None = None) -> ModelCard:
    """``card`` with its per-class thresholds replaced, for the labels the thresholds file names
    (what its ``detected`` labels then use); the other labels keep theirs."""
    data = read_thresholds(path, storage_options)
    model = f"{card.name}-{card.version}"
    if data["model"] != model:
        raise ValueError(f"{path} holds thresholds of model {data['model']}, not {model}")
    if not card.thresholds:
        raise ValueError(
            f"model {model} has no per-class thresholds (it names its top-1 label): nothing to replace"
        )
    unknown = sorted(set(data["thresholds"]) - set(card.labels))
    if unknown:
        raise ValueError(f"{path} names labels model {model} lacks: {', '.join(unknown[:5])}")
    given = {label: float(entry["threshold"]) for label, entry in data["thresholds"].items()}
    thresholds = tuple(given.get(label, old) for label, old in zip(card.labels, card.thresholds, strict=True))
    return dataclasses.replace(card, thresholds=thresholds)
