"""Audio and figures of one segment: a WAV cut on the server, the explanation's PNGs.

The cut reads only its part of the recording: the file is opened through fsspec (local disk or
object storage, small read blocks), libsndfile seeks to the segment's first frame and decodes
its frames only. The figures come from ``report.explain`` (one forward and backward pass) and are
kept for the few segments looked at last, so a page's images cost one explanation.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import IO

import numpy as np
import soundfile as sf
from fsspec.core import url_to_fs

from audify_batch.ingest.audio_io import AudioDecodeError, open_audio
from audify_batch.model.checkpoint import ModelCard
from audify_batch.model.network import Network
from audify_batch.report.explain import explain_window, read_window
from audify_batch.report.explain_page import figures

READ_BLOCK_BYTES = 1 << 18  # fsspec read-ahead on object storage: 256 KiB, not the whole file
MAX_CLIP_S = 60.0
FIXED_FIGURES = ("waveform", "log_mel", "top_k", "gradcam")
CACHED_SEGMENTS = 8


def open_source(uri: str) -> IO[bytes]:
    """The recording at ``uri`` as a seekable binary file (fsspec: local path, file:// or s3://)."""
    fs, path = url_to_fs(uri)
    handle: IO[bytes] = fs.open(path, "rb", block_size=READ_BLOCK_BYTES)
    return handle


def cut_wav(uri: str, start_s: float, end_s: float) -> bytes:
    """``start_s``..``end_s`` of ``uri`` as a 16-bit PCM WAV at the recording's rate and channels."""
    if not 0 <= start_s < end_s or end_s - start_s > MAX_CLIP_S:
        raise ValueError(f"a clip spans 0 <= start_s < end_s, at most {MAX_CLIP_S:g} s")
    with open_source(uri) as handle, open_audio(handle, uri) as audio:
        rate_hz = int(audio.samplerate)
        first = round(start_s * rate_hz)
        if first >= audio.frames:
            raise AudioDecodeError(uri, f"the segment starts past the end ({audio.frames / rate_hz:.2f} s)")
        try:
            audio.seek(first)
            block = audio.read(round((end_s - start_s) * rate_hz), dtype="int16", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioDecodeError(uri, f"not readable as audio ({error})") from error
    buffer = io.BytesIO()
    sf.write(buffer, np.ascontiguousarray(block), rate_hz, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


class Explainer:
    """The loaded model's explanation figures of a segment, kept for the last few segments."""

    def __init__(self, model: Network, card: ModelCard, cached: int = CACHED_SEGMENTS) -> None:
        self.model, self.card = model, card
        self._cached = cached
        self._figures: OrderedDict[tuple[str, float], dict[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()  # one explanation at a time; the model is not re-entrant

    @property
    def model_name(self) -> str:
        """``<name>-<version>``, as the output's model partitions are named."""
        return f"{self.card.name}-{self.card.version}"

    def figure_names(self) -> list[str]:
        """Names of the figures, in page order (the CNN stages last)."""
        return [*FIXED_FIGURES, *(f"stage_{name}" for name in self.model.net.stage_names)]

    def figure(self, uri: str, start_s: float, name: str) -> bytes | None:
        """PNG ``name`` of the window of ``uri`` from ``start_s``; None for an unknown name."""
        if name not in self.figure_names():
            return None
        return self._all(uri, start_s).get(f"{name}.png")

    def _all(self, uri: str, start_s: float) -> dict[str, bytes]:
        key = (uri, start_s)
        with self._lock:
            if key in self._figures:
                self._figures.move_to_end(key)
                return self._figures[key]
            window = read_window(uri, start_s, self.card.frontend.sample_rate_hz, self.card.segment_s)
            pngs = figures(explain_window(self.model, self.card, window))
            self._figures[key] = pngs
            while len(self._figures) > self._cached:
                self._figures.popitem(last=False)
            return pngs
