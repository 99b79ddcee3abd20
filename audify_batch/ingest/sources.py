"""Sources: find the recordings of an archive through fsspec (local disk or object storage).

SOURCE is a folder (searched recursively), a glob, a list file (``.txt``,
``.lst`` or ``.list``: one path or URL per line, relative paths resolved
against the list file's folder), or a single audio file. A listed file that
cannot be found is still returned, with the reason, so that it becomes a
failed row rather than a silent gap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from audify_batch.fs import is_local

# Everything libsndfile 1.2 decodes, by file name extension.
AUDIO_EXTENSIONS = frozenset(
    [
        ".wav",
        ".wave",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".aif",
        ".aiff",
        ".aifc",
        ".au",
        ".snd",
        ".caf",
        ".w64",
        ".rf64",
        ".wv",
        ".voc",
        ".sd2",
        ".htk",
    ]
)
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})
GLOB_CHARS = frozenset("*?[")
FINGERPRINT_CHUNK_BYTES = 64 * 1024


class SourceError(Exception):
    """SOURCE itself is unusable (does not exist, names no recordings)."""


@dataclass(frozen=True)
class RecordingRef:
    """One recording as found: where it is, and the facts that key reruns."""

    uri: str
    size_bytes: int
    mtime_s: float
    error: str | None = None

    @property
    def recording_id(self) -> str:
        return hashlib.sha1(self.uri.encode()).hexdigest()[:16]


def _mtime_s(info: dict[str, Any]) -> float:
    for key in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
    return 0.0


def _uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return path if is_local(fs) else fs.unstrip_protocol(path)


def _ref(fs: fsspec.AbstractFileSystem, path: str, info: dict[str, Any]) -> RecordingRef:
    return RecordingRef(_uri(fs, path), int(info.get("size") or 0), _mtime_s(info))


def is_audio_name(path: str) -> bool:
    return PurePosixPath(path).suffix.lower() in AUDIO_EXTENSIONS


def _refs_from(fs: fsspec.AbstractFileSystem, found: dict[str, dict[str, Any]]) -> list[RecordingRef]:
    return [
        _ref(fs, path, info)
        for path, info in sorted(found.items())
        if info.get("type") != "directory" and is_audio_name(path)
    ]


def _from_list_file(fs: fsspec.AbstractFileSystem, path: str) -> list[RecordingRef]:
    base = PurePosixPath(path).parent
    refs = []
    with fs.open(path, "rt") as handle:
        lines = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    for line in lines:
        entry_fs, entry_path = url_to_fs(line if "://" in line or line.startswith("/") else str(base / line))
        try:
            refs.append(_ref(entry_fs, entry_path, entry_fs.info(entry_path)))
        except (FileNotFoundError, PermissionError, OSError) as error:
            reason = "no such file" if isinstance(error, FileNotFoundError) else str(error)
            refs.append(RecordingRef(_uri(entry_fs, entry_path), 0, 0.0, reason))
    return refs


def discover(source: str, storage_options: dict[str, Any] | None = None) -> list[RecordingRef]:
    """All recordings named by SOURCE, sorted by URI, without duplicates."""
    fs, path = url_to_fs(source, **(storage_options or {}))
    if GLOB_CHARS & set(path):
        refs = _refs_from(fs, fs.glob(path, detail=True))
    elif fs.isdir(path):
        refs = _refs_from(fs, fs.find(path, detail=True, withdirs=False))
    elif fs.isfile(path) and PurePosixPath(path).suffix.lower() in LIST_EXTENSIONS:
        refs = _from_list_file(fs, path)
    elif fs.isfile(path):
        refs = [_ref(fs, path, fs.info(path))]
    else:
        raise SourceError(f"source not found: {source}")
    unique = {ref.uri: ref for ref in refs}
    return [unique[uri] for uri in sorted(unique)]


def discover_all(
    sources: str | Sequence[str], storage_options: dict[str, Any] | None = None
) -> list[RecordingRef]:
    """``discover`` over one SOURCE or several (an explicit list of files or prefixes), merged."""
    if isinstance(sources, str):
        return discover(sources, storage_options)
    if not sources:
        raise SourceError("no sources given")
    unique = {ref.uri: ref for source in sources for ref in discover(source, storage_options)}
    return [unique[uri] for uri in sorted(unique)]


def modified_between(
    refs: list[RecordingRef], after_s: float | None = None, before_s: float | None = None
) -> list[RecordingRef]:
    """Recordings modified in ``[after_s, before_s)`` (POSIX seconds); unknown ones are kept."""
    return [
        ref
        for ref in refs
        if ref.error
        or ((after_s is None or ref.mtime_s >= after_s) and (before_s is None or ref.mtime_s < before_s))
    ]


def fingerprint(uri: str, size_bytes: int, storage_options: dict[str, Any] | None = None) -> str:
    """Content fingerprint: BLAKE2b of the size and the first and last 64 KiB.

    Two range reads of 64 KiB each (on object storage, separate from the audio
    stream, so neither pulls a read-ahead block it does not need). Reruns key on
    uri, size and modification time; the fingerprint is recorded to spot moved
    or touched copies.
    """
    fs, path = url_to_fs(uri, **(storage_options or {}))
    digest = hashlib.blake2b(str(size_bytes).encode(), digest_size=16)
    head_end = min(FINGERPRINT_CHUNK_BYTES, size_bytes)
    digest.update(fs.cat_file(path, start=0, end=head_end))
    if size_bytes > FINGERPRINT_CHUNK_BYTES:
        tail_start = max(FINGERPRINT_CHUNK_BYTES, size_bytes - FINGERPRINT_CHUNK_BYTES)
        digest.update(fs.cat_file(path, start=tail_start, end=size_bytes))
    return "b2h64k:" + digest.hexdigest()
