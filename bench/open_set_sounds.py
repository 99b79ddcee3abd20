"""The sounds of the open-set check set (bench/open_set.py): one seeded generator per kind.

Each generator takes a seeded ``numpy.random.Generator`` and a sample rate and returns a 5 s
signal with the parameters that made it. Speech comes from Debian's espeak-ng.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE_HZ = 16_000
DURATION_S = 5.0

Params = dict[str, float | int | str]
Signal = np.ndarray
Generator = Callable[[np.random.Generator, int], tuple[Signal, Params]]

SPEECH_VOICES = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en+f3", "en-us+m3", "en+f4", "en+klatt")
SPEECH_SENTENCES = (
    "Please remember to bring the blue folder to the meeting tomorrow.",
    "The train to the city leaves from platform four at half past nine.",
    "Our quarterly results were better than we expected this year.",
    "Turn left at the next corner and keep going for two blocks.",
    "I think we should paint the kitchen a lighter shade of green.",
    "The library closes early on Sundays during the summer months.",
    "Could you send me the report before the end of the day?",
    "Seven hundred people signed up for the workshop last week.",
    "She opened the window and read the letter one more time.",
    "The new software update fixes several problems with printing.",
    "Add two cups of flour and stir until the mixture is smooth.",
    "We will announce the winners of the competition on Friday.",
)
_DTMF_ROWS_HZ = {"123": 697, "456": 770, "789": 852, "*0#": 941}
_DTMF_COLUMNS_HZ = {"147*": 1209, "2580": 1336, "369#": 1477}
_DTMF_HZ = {
    key: (row_hz, column_hz)
    for keys, row_hz in _DTMF_ROWS_HZ.items()
    for key in keys
    for column_keys, column_hz in _DTMF_COLUMNS_HZ.items()
    if key in column_keys
}
_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "pentatonic": (0, 2, 4, 7, 9)}
_CHORDS = {"major": (0, 4, 7), "minor": (0, 3, 7), "maj7": (0, 4, 7, 11), "min7": (0, 3, 7, 10)}


def _n_samples(sample_rate_hz: int) -> int:
    return round(DURATION_S * sample_rate_hz)


def _times_s(n: int, sample_rate_hz: int) -> Signal:
    return np.arange(n) / sample_rate_hz


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def _at_rms(x: Signal, rms_dbfs: float) -> Signal:
    rms = float(np.sqrt(np.mean(x**2)))
    return x * (10.0 ** (rms_dbfs / 20.0) / rms) if rms > 0 else x


def _at_peak(x: Signal, peak_dbfs: float) -> Signal:
    peak = float(np.max(np.abs(x)))
    return x * (10.0 ** (peak_dbfs / 20.0) / peak) if peak > 0 else x


def _fade(x: Signal, sample_rate_hz: int, fade_s: float = 0.01) -> Signal:
    """Raised-cosine fade in and out, so a cut is not a click."""
    n = min(round(fade_s * sample_rate_hz), len(x) // 2)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))
    out = x.copy()
    out[:n] *= ramp
    out[len(x) - n :] *= ramp[::-1]
    return out


def _spectral_noise(
    rng: np.random.Generator, n: int, sample_rate_hz: int, exponent: float, band_hz: tuple[float, float]
) -> Signal:
    """Gaussian noise with power ~ 1/f**exponent, within 4th-order Butterworth-shaped edges."""
    spectrum = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    freqs_hz = np.fft.rfftfreq(n, 1.0 / sample_rate_hz)
    gain = np.zeros_like(freqs_hz)
    gain[1:] = freqs_hz[1:] ** (-exponent / 2.0)
    low_hz, high_hz = band_hz
    if low_hz > 0:
        gain[1:] /= np.sqrt(1.0 + (low_hz / freqs_hz[1:]) ** 8)
    if high_hz < sample_rate_hz / 2:
        gain /= np.sqrt(1.0 + (freqs_hz / high_hz) ** 8)
    return np.fft.irfft(spectrum * gain, n)


def _note(freq_hz: float, n: int, sample_rate_hz: int, decay_per_s: float, n_harmonics: int) -> Signal:
    """A harmonic tone with a 5 ms attack and an exponential decay (faster for upper partials)."""
    t = _times_s(n, sample_rate_hz)
    out = np.zeros(n)
    for h in range(1, n_harmonics + 1):
        if h * freq_hz >= sample_rate_hz / 2:
            break
        envelope = np.exp(-t * decay_per_s * (1.0 + 0.6 * (h - 1)))
        out += np.sin(2 * np.pi * h * freq_hz * t) * envelope / h**1.5
    attack = min(n, round(0.005 * sample_rate_hz))
    out[:attack] *= np.linspace(0.0, 1.0, attack)
    return out


def _add(out: Signal, x: Signal, start: int) -> None:
    end = min(len(out), start + len(x))
    if end > start:
        out[start:end] += x[: end - start]


def _silence(rng: np.random.Generator, sample_rate_hz: int) -> tuple[Signal, Params]:
    n = _n_samples(sample_rate_hz)
    if rng.random() < 0.5:
        return np.zeros(n), {"variant": "digital"}
    rms_dbfs = rng.uniform(-96.0, -80.0)
    dither = rng.uniform(-1.0, 1.0, n) + rng.uniform(-1.0, 1.0, n)  # triangular (TPDF)
    return _at_rms(dither, rms_dbfs), {"variant": "dither", "rms_dbfs": rms_dbfs}


def _hiss(rng: np.random.Generator, sample_rate_hz: int) -> tuple[Signal, Params]:
    rms_dbfs = rng.uniform(-60.0, -40.0)
    x = rng.standard_normal(_n_samples(sample_rate_hz))
    return _at_rms(x, rms_dbfs), {"rms_dbfs": rms_dbfs}


def _noise(rng: np.random.Generator, sample_rate_hz: int) -> tuple[Signal, Params]:
    colour = str(rng.choice(["white", "pink", "brown"]))
    band = str(rng.choice(["none", "lowpass", "highpass", "bandpass"]))
    nyquist_hz = sample_rate_hz / 2
    low_hz = _log_uniform(rng, 100.0, 2000.0) if band in ("highpass", "bandpass") else 0.0
    high_hz = _log_uniform(rng, 500.0, 6000.0) if band in ("lowpass", "bandpass") else nyquist_hz
    if band == "bandpass":
        high_hz = max(high_hz, 2.0 * low_hz)
    rms_dbfs = rng.uniform(-40.0, -12.0)
    exponent = {"white": 0.0, "pink": 1.0, "brown": 2.0}[colour]
    x = _spectral_noise(rng, _n_samples(sample_rate_hz), sample_rate_hz, exponent, (low_hz, high_hz))
    params: Params = {"colour": colour, "filter": band, "low_hz": low_hz, "high_hz": high_hz}
    return _at_rms(x, rms_dbfs), {**params, "rms_dbfs": rms_dbfs}


def _tone(rng: np.random.Generator, sample_rate_hz: int) -> tuple[Signal, Params]:
    freq_hz = _log_uniform(rng, 100.0, 8000.0 * 0.999)
    peak_dbfs = rng.uniform(-40.0, -6.0)
    phase = rng.uniform(0.0, 2 * np.pi)
    x = np.sin(2 * np.pi * freq_hz * _times_s(_n_samples(sample_rate_hz), sample_rate_hz) + phase)
    return _at_peak(_fade(x, sample_rate_hz), peak_dbfs), {"freq_hz": freq_hz, "peak_dbfs": peak_dbfs}


def _chord(rng: np.random.Generator, sample_rate_hz: int) -> tuple[Signal, Params]:
    """One to three piano-like chords (3-4 notes each) on a I-IV-V-vi progression."""
    n = _n_samples(sample_rate_hz)
    quality = str(rng.choice(list(_CHORDS)))
    root = int(rng.integers(40, 73))
    n_strikes = int(rng.integers(1, 4))
    decay_per_s = rng.uniform(0.6, 2.5)
    out = np.zeros(n)
    steps = [0] + [int(s) for s in rng.choice([5, 7, -3], size=n_strikes - 1)]
    for k, step in enumerate(steps):
        start = k * n // n_strikes
        for interval in _CHORDS[quality]:
            freq_hz = _midi_hz(root + step + interval)
            _add(out, _note(freq_hz, n - start, sample_rate_hz, decay_per_s, 6), start)
    peak_dbfs = rng.uniform(-24.0, -3.0)
    params: Params = {"quality": quality, "root_midi": root, "n_strikes": n_strikes}
    return _at_peak(_fade(out, sample_rate_hz), peak_dbfs), {**params, "decay_per_s": decay_per_s}


def _sweep(rng: np.random.Generator, sample_rate_hz: int) -> tuple[Signal, Params]:
    """One linear or exponential sweep (not a repeating wail: that would be a siren)."""
    n = _n_samples(sample_rate_hz)
    f0_hz, f1_hz = _log_uniform(rng, 100.0, 1000.0), _log_uniform(rng, 2000.0, 8000.0 * 0.999)
    if rng.random() < 0.5:
        f0_hz, f1_hz = f1_hz, f0_hz
    law = str(rng.choice(["linear", "exponential"]))
    sweep_s = rng.uniform(1.0, DURATION_S)
    start_s = rng.uniform(0.0, DURATION_S - sweep_s)
    t = _times_s(round(sweep_s * sample_rate_hz), sample_rate_hz)
    if law == "linear":
        phase = 2 * np.pi * (f0_hz * t + (f1_hz - f0_hz) * t**2 / (2 * sweep_s))
    else:
        k = np.log(f1_hz / f0_hz)
        phase = 2 * np.pi * f0_hz * sweep_s / k * (np.exp(k * t / sweep_s) - 1.0)
    out = np.zeros(n)
    _add(out, _fade(np.sin(phase), sample_rate_hz), round(start_s * sample_rate_hz))
    peak_dbfs = rng.uniform(-30.0, -6.0)
    params: Params = {"f0_hz": f0_hz, "f1_hz": f1_hz, "law": law, "sweep_s": sweep_s, "start_s": start_s}
    return _at_peak(out, peak_dbfs), {**params, "peak_dbfs": peak_dbfs}


def _drum(rng: np.random.Generator, sample_rate_hz: int, kick: bool) -> Signal:
    if kick:  # a sine falling from 150 Hz to 50 Hz, 150 ms
        t = _times_s(round(0.15 * sample_rate_hz), sample_rate_hz)
        freq_hz = 50.0 + 100.0 * np.exp(-t / 0.03)
        return np.sin(2 * np.pi * np.cumsum(freq_hz) / sample_rate_hz) * np.exp(-t / 0.05)
    t = _times_s(round(0.04 * sample_rate_hz), sample_rate_hz)  # a hi-hat click: bright noise
    return np.diff(rng.standard_normal(len(t) + 1)) * np.exp(-t / 0.008) * 0.3


def _music(rng: np.random.Generator, sample_rate_hz: int) -> tuple[Signal, Params]:
    """A melody on a scale, an optional bass line and optional kick and hi-hat on the beat."""
    n = _n_samples(sample_rate_hz)
    tempo_bpm = rng.uniform(80.0, 140.0)
    scale = str(rng.choice(list(_SCALES)))
    key = int(rng.integers(57, 70))
    has_bass, has_drums = bool(rng.random() < 0.7), bool(rng.random() < 0.7)
    beat = round(60.0 / tempo_bpm * sample_rate_hz)
    degrees, degree = _SCALES[scale], int(rng.integers(0, 5))
    melody, bass, drums = np.zeros(n), np.zeros(n), np.zeros(n)
    for k, start in enumerate(range(0, n, beat // 2)):  # eighth notes, some rests
        degree = int(np.clip(degree + rng.integers(-2, 3), 0, 2 * len(degrees) - 1))
        if rng.random() < 0.8:
            note = key + 12 * (degree // len(degrees)) + degrees[degree % len(degrees)]
            _add(melody, _note(_midi_hz(note), beat, sample_rate_hz, 4.0, 4), start)
        if has_bass and k % 2 == 0:  # a chord tone (1st, 3rd or 5th degree) two octaves down
            bass_note = key - 24 + degrees[2 * int(rng.integers(0, 3)) % len(degrees)]
            _add(bass, _note(_midi_hz(bass_note), beat, sample_rate_hz, 3.0, 2), start)
        if has_drums:
            _add(drums, _drum(rng, sample_rate_hz, kick=k % 4 == 0), start)
    out = melody + 0.8 * bass + 0.7 * drums
    peak_dbfs = rng.uniform(-20.0, -3.0)
    params: Params = {"tempo_bpm": tempo_bpm, "scale": scale, "key_midi": key}
    params.update(bass=int(has_bass), drums=int(has_drums), peak_dbfs=peak_dbfs)
    return _at_peak(_fade(out, sample_rate_hz), peak_dbfs), params


def _dtmf(rng: np.random.Generator, sample_rate_hz: int) -> tuple[Signal, Params]:
    """Dialled DTMF digits, or a regular beep pattern."""
    n = _n_samples(sample_rate_hz)
    out = np.zeros(n)
    pos = round(rng.uniform(0.0, 0.5) * sample_rate_hz)
    if rng.random() < 0.5:
        digits = "".join(rng.choice(list(_DTMF_HZ), size=int(rng.integers(4, 13))))
        tone_s, gap_s = rng.uniform(0.07, 0.2), rng.uniform(0.05, 0.15)
        t = _times_s(round(tone_s * sample_rate_hz), sample_rate_hz)
        for digit in digits:
            low_hz, high_hz = _DTMF_HZ[digit]
            pair = np.sin(2 * np.pi * low_hz * t) + np.sin(2 * np.pi * high_hz * t)
            _add(out, _fade(pair, sample_rate_hz, 0.003), pos)
            pos += round((tone_s + gap_s) * sample_rate_hz)
        params: Params = {"variant": "dtmf", "digits": digits, "tone_s": tone_s, "gap_s": gap_s}
    else:
        freq_hz, beep_s, gap_s = rng.uniform(400.0, 3000.0), rng.uniform(0.05, 0.5), rng.uniform(0.1, 1.0)
        t = _times_s(round(beep_s * sample_rate_hz), sample_rate_hz)
        while pos < n:
            _add(out, _fade(np.sin(2 * np.pi * freq_hz * t), sample_rate_hz, 0.003), pos)
            pos += round((beep_s + gap_s) * sample_rate_hz)
        params = {"variant": "beeps", "freq_hz": freq_hz, "beep_s": beep_s, "gap_s": gap_s}
    peak_dbfs = rng.uniform(-30.0, -6.0)
    return _at_peak(out, peak_dbfs), {**params, "peak_dbfs": peak_dbfs}


def espeak(text: str, voice: str, speed_wpm: int, pitch: int, sample_rate_hz: int) -> Signal:
    """``text`` spoken by espeak-ng, resampled to ``sample_rate_hz`` (float64, native length)."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng not found: apt-get install -y --no-install-recommends espeak-ng")
    with tempfile.TemporaryDirectory(prefix="open-set-") as folder:
        wav = Path(folder) / "speech.wav"
        command = ["espeak-ng", "-w", str(wav), "-v", voice, "-s", str(speed_wpm), "-p", str(pitch), text]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not wav.is_file():
            raise RuntimeError(f"espeak-ng failed ({result.returncode}): {result.stderr.strip()}")
        audio, rate_hz = sf.read(wav, dtype="float64")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    return np.asarray(soxr.resample(audio, rate_hz, sample_rate_hz, quality="HQ"), dtype=np.float64)


def _speech(rng: np.random.Generator, sample_rate_hz: int) -> tuple[Signal, Params]:
    """Two sentences spoken by one voice, cut at 5 s (one sentence is 3-5 s long)."""
    voice = str(rng.choice(SPEECH_VOICES))
    first, second = (int(i) for i in rng.choice(len(SPEECH_SENTENCES), size=2, replace=False))
    speed_wpm, pitch = int(rng.integers(130, 201)), int(rng.integers(25, 76))
    start_s, peak_dbfs = rng.uniform(0.0, 0.4), rng.uniform(-18.0, -3.0)
    text = f"{SPEECH_SENTENCES[first]} {SPEECH_SENTENCES[second]}"
    out = np.zeros(_n_samples(sample_rate_hz))
    _add(out, espeak(text, voice, speed_wpm, pitch, sample_rate_hz), round(start_s * sample_rate_hz))
    params: Params = {"voice": voice, "sentences": f"{first},{second}", "speed_wpm": speed_wpm}
    params.update(pitch=pitch, start_s=start_s, peak_dbfs=peak_dbfs)
    return _at_peak(_fade(out, sample_rate_hz), peak_dbfs), params


GENERATORS: dict[str, Generator] = {
    "silence": _silence,
    "hiss": _hiss,
    "noise": _noise,
    "tone": _tone,
    "chord": _chord,
    "sweep": _sweep,
    "music": _music,
    "dtmf": _dtmf,
    "speech": _speech,
}
