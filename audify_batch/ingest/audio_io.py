"""Audio decoding: soundfile in, mono float32 at the model rate out.

Resampling uses soxr (band-limited, high quality). Reading is done in
blocks so that a long recording is never held whole in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
import soxr

DEFAULT_BLOCK_FRAMES = 1 << 17
EMPTY_FILE_REASON = "empty file (0 bytes)"


class AudioStream(Protocol):
    """The file-object methods soundfile's virtual I/O reads through (binary files, ReadErrorTrap)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def tell(self) -> int: ...


class AudioDecodeError(Exception):
    """A file could not be read as audio; ``reason`` says why, ``str()`` adds the path."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate_hz: int
    channels: int
    n_frames: int

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.sample_rate_hz


def probe(path: str | Path) -> AudioInfo:
    """Header facts of an audio file, without decoding it; a missing or empty file says so."""
    try:
        if os.stat(path).st_size == 0:
            raise AudioDecodeError(str(path), EMPTY_FILE_REASON)
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise _decode_error(path, error) from error
    return AudioInfo(str(path), int(info.samplerate), int(info.channels), int(info.frames))


def io_reason(error: OSError) -> str | None:
    """A short reason for the common I/O errors, or None for others."""
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, IsADirectoryError):
        return "is a directory"
    return None


def _reason(error: BaseException) -> str:
    known = io_reason(error) if isinstance(error, OSError) else None
    if known:
        return known
    text = getattr(error, "error_string", None) or str(error).strip() or type(error).__name__
    return f"not readable as audio ({text.rstrip('.')})"


def _decode_error(path: str | Path, error: BaseException) -> AudioDecodeError:
    return AudioDecodeError(str(path), _reason(error))


# WAVE format tags whose frames are exactly block_align bytes: PCM, IEEE float, A-law, mu-law, extensible.
_WAV_FRAMED_TAGS = frozenset({0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE})
_WAV_SIZE_UNKNOWN = frozenset({0, 0xFFFFFFFF})  # a stream written before its length was known
_OGG_EOS_FLAG = 0x04


def wav_declared_frames(head: bytes) -> int | None:
    """Frames the RIFF/WAVE header of ``head`` (the file's first bytes) declares, or None when
    this is no WAV, its data chunk is not within ``head``, or its length is not declared."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    position, fmt_tag, block_align = 12, None, 0
    while position + 8 <= len(head):
        chunk, body = head[position : position + 4], position + 8
        size = int.from_bytes(head[position + 4 : body], "little")
        if chunk == b"fmt " and body + 14 <= len(head):
            fmt_tag = int.from_bytes(head[body : body + 2], "little")
            block_align = int.from_bytes(head[body + 12 : body + 14], "little")
        elif chunk == b"data":
            if fmt_tag not in _WAV_FRAMED_TAGS or block_align <= 0 or size in _WAV_SIZE_UNKNOWN:
                return None
            return size // block_align
        position = body + size + (size & 1)
    return None


def ogg_ends_cleanly(last: bytes) -> bool:
    """True when ``last`` (a file's last bytes) ends with a whole Ogg page that closes its stream.

    An Ogg file declares no total length up front: a cut one is recognised by its end, a last
    page cut short or a last page without the end-of-stream flag.
    """
    start = last.rfind(b"OggS")
    while start >= 0:
        n_lacing = last[start + 26] if start + 27 <= len(last) else -1
        if n_lacing >= 0 and last[start + 4] == 0 and start + 27 + n_lacing <= len(last):
            length = 27 + n_lacing + sum(last[start + 27 : start + 27 + n_lacing])
            if start + length == len(last):
                return bool(last[start + 5] & _OGG_EOS_FLAG)
        start = last.rfind(b"OggS", 0, start)
    return False


def truncation(head: bytes, last: bytes, n_frames: int, sample_rate_hz: int) -> str | None:
    """Why a file that opened with ``n_frames`` readable frames is cut short, or None.

    WAV: the header's data length against what the file holds. Ogg (Vorbis, Opus, FLAC in
    Ogg): no length is declared, so only the missing end of the stream is seen. Other
    formats: libsndfile's own frame count (checked against what decodes by the caller).
    """
    readable_s = n_frames / sample_rate_hz
    declared = wav_declared_frames(head)
    if declared is not None and declared > n_frames:
        return f"truncated: {readable_s:.1f} s of {declared / sample_rate_hz:.1f} s declared"
    if head[:4] == b"OggS" and not ogg_ends_cleanly(last):
        return f"truncated: {readable_s:.1f} s readable; the Ogg stream stops before its end (length unknown)"
    return None


def to_mono(block: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) block to float32 mono."""
    if block.ndim == 1:
        return block.astype(np.float32, copy=False)
    return block.mean(axis=1, dtype=np.float32)


def resample(samples: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Resample a whole mono signal with soxr's high-quality filter."""
    if from_hz == to_hz:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, from_hz, to_hz, quality="HQ").astype(np.float32, copy=False)


@contextmanager
def open_audio(source: str | Path | AudioStream, name: str | None = None) -> Iterator[sf.SoundFile]:
    """An open ``soundfile.SoundFile``; any failure to open is an ``AudioDecodeError``."""
    label = name or str(source)
    try:
        audio = sf.SoundFile(source if not isinstance(source, Path) else str(source))
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError) as error:
        raise _decode_error(label, error) from error
    with audio:
        yield audio


def decode_blocks(
    audio: sf.SoundFile,
    target_rate_hz: int,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
    name: str | None = None,
) -> Iterator[np.ndarray]:
    """Consecutive mono float32 blocks of an open file, resampled to ``target_rate_hz``.

    Concatenated, the blocks equal the whole file downmixed and resampled
    (soxr's streaming resampler keeps its state between blocks).
    """
    source_hz = int(audio.samplerate)
    stream = None
    if source_hz != target_rate_hz:
        stream = soxr.ResampleStream(source_hz, target_rate_hz, 1, np.float32, "HQ")
    try:
        for block in audio.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
            mono = to_mono(block)
            yield mono if stream is None else stream.resample_chunk(mono)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise _decode_error(name or audio.name, error) from error
    if stream is not None:
        yield stream.resample_chunk(np.zeros(0, np.float32), last=True)


def stream_mono(
    path: str | Path,
    target_rate_hz: int,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
) -> Iterator[np.ndarray]:
    """Mono float32 blocks of the file at ``path``, resampled to ``target_rate_hz``."""
    with open_audio(path) as audio:
        yield from decode_blocks(audio, target_rate_hz, block_frames, str(path))


def read_mono(path: str | Path, target_rate_hz: int) -> np.ndarray:
    """The whole file as mono float32 at ``target_rate_hz`` (for short clips)."""
    blocks = list(stream_mono(path, target_rate_hz))
    if not blocks:
        return np.zeros(0, np.float32)
    return np.concatenate(blocks)
