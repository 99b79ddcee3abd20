"""Sources: find the recordings of an archive through fsspec (local disk or object storage).

SOURCE is a folder (searched recursively), a glob, a list file (``.txt``,
``.lst`` or ``.list``: one path or URL per line, relative paths resolved
against the list file's folder), or a single audio file. A listed file that
cannot be found is still returned, with the reason, so that it becomes a
failed row rather than a silent gap; so are a broken symbolic link ("broken
symbolic link to X"), a symbolic link loop, and a folder with an audio name
("is a directory"). A SOURCE that names no recordings at all (an empty
folder, a glob that matches nothing, an empty list file) is a
``NothingFoundError``, not an empty run.

Local paths are keyed by their absolute, normalised spelling
(``os.path.abspath``: ``..`` and ``.`` resolved lexically), so
``../shared/x.ogg`` and ``/work/shared/x.ogg`` are one recording. Symbolic
links are not followed for the key: a link's own path is the recording's
identity, so a folder of links keeps its names and two links to one file
are two recordings. (Lexical ``..`` means ``link/../x`` is ``x`` beside the
link, as in a shell's ``cd``, not beside the link's target.)
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
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


class NothingFoundError(SourceError):
    """SOURCE exists but names no recordings (an empty folder, a glob without matches, an empty list)."""


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


def local_key(path: str) -> str:
    """The one spelling of a local path: absolute, ``..`` resolved lexically, links not followed."""
    return os.path.normpath(os.path.abspath(path))


def _uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return local_key(path) if is_local(fs) else fs.unstrip_protocol(path)


def _link_problem(path: str, info: dict[str, Any]) -> str | None:
    """Why a local symbolic link cannot be read as a file, or None when it can."""
    if not info.get("islink"):
        return None
    try:
        target = os.stat(path)
    except FileNotFoundError:
        return f"broken symbolic link to {info.get('destination') or os.readlink(path)}"
    except OSError as error:
        loop = error.errno == errno.ELOOP
        return "symbolic link loop" if loop else f"cannot follow symbolic link ({error.strerror})"
    return "is a directory" if stat.S_ISDIR(target.st_mode) else None


def _ref(fs: fsspec.AbstractFileSystem, path: str, info: dict[str, Any]) -> RecordingRef:
    uri, mtime_s = _uri(fs, path), _mtime_s(info)
    problem = "is a directory" if info.get("type") == "directory" else None
    if problem is None and is_local(fs):
        problem = _link_problem(path, info)
    if problem is not None:
        return RecordingRef(uri, 0, mtime_s, problem)
    return RecordingRef(uri, int(info.get("size") or 0), mtime_s)


def is_audio_name(path: str) -> bool:
    return PurePosixPath(path).suffix.lower() in AUDIO_EXTENSIONS


def _refs_from(
    fs: fsspec.AbstractFileSystem, found: dict[str, dict[str, Any]], root: str | None = None
) -> list[RecordingRef]:
    """Refs of the audio-named entries; a folder with an audio name (not ``root``) fails as one."""
    root_key = root.rstrip("/") if root is not None else None
    return [
        _ref(fs, path, info)
        for path, info in sorted(found.items())
        if is_audio_name(path) and path.rstrip("/") != root_key
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
    """All recordings named by SOURCE, sorted by URI, without duplicates.

    Raises ``SourceError`` when SOURCE does not exist, ``NothingFoundError`` when it names no
    recordings.
    """
    fs, path = url_to_fs(source, **(storage_options or {}))
    if is_local(fs):
        path = local_key(path)
    if GLOB_CHARS & set(path):
        found = fs.glob(path, detail=True)
        refs = _refs_from(fs, found)
        if not refs:
            what = "no files match" if not found else "no audio files match"
            raise NothingFoundError(f"{what} {source}")
    elif fs.isdir(path):
        found = fs.find(path, detail=True, withdirs=True)
        refs = _refs_from(fs, found, root=path)
        if not refs:
            others = sum(info.get("type") != "directory" for info in found.values())
            files = f"{others} file{'s' if others != 1 else ''}"
            detail = f" ({files}, none named like audio: .wav, .flac, .ogg, .mp3, ...)"
            raise NothingFoundError(f"no audio files under {source}" + (detail if others else ""))
    elif fs.isfile(path) and PurePosixPath(path).suffix.lower() in LIST_EXTENSIONS:
        refs = _from_list_file(fs, path)
        if not refs:
            raise NothingFoundError(f"no recordings listed in {source}")
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
    unique: dict[str, RecordingRef] = {}
    for source in sources:  # one empty prefix among several is fine; all of them empty is not
        try:
            unique.update((ref.uri, ref) for ref in discover(source, storage_options))
        except NothingFoundError:
            continue
    if not unique:
        raise NothingFoundError(f"no recordings in any of {len(sources)} sources: {', '.join(sources[:3])}")
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


@dataclass(frozen=True)
class FileEnds:
    """The first 64 KiB of a file and the bytes after them up to 64 KiB from its end."""

    size_bytes: int
    head: bytes
    tail: bytes  # empty when the file fits in ``head``

    @property
    def last(self) -> bytes:
        """The file's last (up to) 64 KiB, wherever they were read from."""
        return (self.head + self.tail)[-FINGERPRINT_CHUNK_BYTES:]

    def fingerprint(self) -> str:
        digest = hashlib.blake2b(str(self.size_bytes).encode(), digest_size=16)
        digest.update(self.head)
        if self.tail:
            digest.update(self.tail)
        return "b2h64k:" + digest.hexdigest()


def read_ends(uri: str, size_bytes: int, storage_options: dict[str, Any] | None = None) -> FileEnds:
    """Two range reads of 64 KiB each (on object storage, separate from the audio stream, so
    neither pulls a read-ahead block it does not need); one when the file is that small."""
    fs, path = url_to_fs(uri, **(storage_options or {}))
    head = fs.cat_file(path, start=0, end=min(FINGERPRINT_CHUNK_BYTES, size_bytes))
    tail = b""
    if size_bytes > FINGERPRINT_CHUNK_BYTES:
        tail_start = max(FINGERPRINT_CHUNK_BYTES, size_bytes - FINGERPRINT_CHUNK_BYTES)
        tail = fs.cat_file(path, start=tail_start, end=size_bytes)
    return FileEnds(size_bytes, head, tail)


def fingerprint(uri: str, size_bytes: int, storage_options: dict[str, Any] | None = None) -> str:
    """Content fingerprint: BLAKE2b of the size and the first and last 64 KiB.

    Recorded with every labeled recording; a rerun skips a recording only when uri, size,
    modification time and this fingerprint all match, so a same-size replacement that kept
    the old modification time (``cp -p``, ``rsync -t``) is labeled again.
    """
    return read_ends(uri, size_bytes, storage_options).fingerprint()
