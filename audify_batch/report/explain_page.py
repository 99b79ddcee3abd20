"""Figures and a small HTML page for one explained segment (``audify explain``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from audify_batch.report.explain import Explanation
from audify_batch.report.html import esc, figure_png, img, page, table

MAX_CHANNELS = 8


def waveform_png(expl: Explanation) -> bytes:
    w = expl.window
    fig = Figure(figsize=(10, 2.2))
    ax = fig.add_subplot()
    t = w.start_s + np.arange(len(w.waveform)) / w.sample_rate_hz
    ax.plot(t, w.waveform, lw=0.5, color="#1f77b4")
    ax.set(xlabel="time in recording (s)", ylabel="amplitude", xlim=(t[0], t[-1]))
    ax.set_title(f"waveform at {w.sample_rate_hz} Hz")
    return figure_png(fig)


def _extent(expl: Explanation) -> tuple[float, float, float, float]:
    """Axes of a (mel band, frame) image: seconds in the recording, mel band index."""
    w = expl.window
    return (w.start_s, w.start_s + w.segment_s, 0, expl.log_mel.shape[0])


def _spectrogram(ax: Axes, expl: Explanation) -> AxesImage:
    return ax.imshow(expl.log_mel, origin="lower", aspect="auto", cmap="magma", extent=_extent(expl))


def log_mel_png(expl: Explanation) -> bytes:
    fig = Figure(figsize=(10, 3))
    ax = fig.add_subplot()
    image = _spectrogram(ax, expl)
    fig.colorbar(image, ax=ax, label="normalised log-mel")
    ax.set(xlabel="time in recording (s)", ylabel="mel band", title="log-mel spectrogram as the model saw it")
    return figure_png(fig)


def gradcam_png(expl: Explanation) -> bytes:
    fig = Figure(figsize=(10, 3))
    ax = fig.add_subplot()
    _spectrogram(ax, expl)
    heat = ax.imshow(
        expl.gradcam, origin="lower", aspect="auto", cmap="jet", alpha=0.45, extent=_extent(expl)
    )
    fig.colorbar(heat, ax=ax, label="Grad-CAM")
    ax.set(xlabel="time in recording (s)", ylabel="mel band", title=f"Grad-CAM for '{expl.labels[0]}'")
    return figure_png(fig)


def top_k_png(expl: Explanation) -> bytes:
    fig = Figure(figsize=(6, 0.45 * len(expl.labels) + 0.8))
    ax = fig.add_subplot()
    ax.barh(list(reversed(expl.labels)), list(reversed(expl.confidences)), color="#2ca02c")
    ax.set(xlim=(0, 1), xlabel="confidence", title="top labels")
    return figure_png(fig)


def stage_png(name: str, activation: np.ndarray) -> bytes:
    """The most active channels of one stage, as a grid of maps."""
    strongest = np.argsort(activation.mean(axis=(1, 2)))[::-1][:MAX_CHANNELS]
    fig = Figure(figsize=(12, 2.0))
    for i, channel in enumerate(strongest):
        ax = fig.add_subplot(1, len(strongest), i + 1)
        ax.imshow(activation[channel], origin="lower", aspect="auto", cmap="viridis")
        ax.set_title(f"ch {channel}", fontsize=8)
        ax.axis("off")
    fig.suptitle(
        f"{name}: {activation.shape[0]} channels, {activation.shape[1]}x{activation.shape[2]}, "
        f"{len(strongest)} most active",
        fontsize=9,
        y=1.12,
    )
    return figure_png(fig)


def figures(expl: Explanation) -> dict[str, bytes]:
    """File name -> PNG for every figure of the page, in page order."""
    pngs = {
        "waveform.png": waveform_png(expl),
        "log_mel.png": log_mel_png(expl),
        "top_k.png": top_k_png(expl),
        "gradcam.png": gradcam_png(expl),
    }
    for name, activation in expl.stages.items():
        pngs[f"stage_{name}.png"] = stage_png(name, activation)
    return pngs


def write_explanation(expl: Explanation, out_dir: Path, model: str, asked_s: float | None = None) -> Path:
    """PNG files plus ``index.html`` (images embedded too, so the page stands alone).

    ``asked_s``: the second the user asked about (``--at``), shown in the title.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = figures(expl)
    for name, png in pngs.items():
        (out_dir / name).write_bytes(png)
    w = expl.window
    facts = table(
        ["recording", "segment", "model"],
        [[w.uri, f"{w.start_s:.2f}-{w.end_s:.2f} s of {w.duration_s:.2f} s", model]],
    )
    ranked = [[i + 1, lab, c] for i, (lab, c) in enumerate(zip(expl.labels, expl.confidences, strict=True))]
    top = esc(expl.labels[0])
    sections = [
        facts,
        "<h2>Top labels</h2>",
        table(["rank", "label", "confidence"], ranked),
        img(pngs["top_k.png"], "top labels"),
        "<h2>Waveform</h2>",
        img(pngs["waveform.png"], "waveform"),
        "<h2>Log-mel spectrogram</h2>",
        img(pngs["log_mel.png"], "log-mel spectrogram"),
        f"<h2>Grad-CAM: where '{top}' came from</h2>",
        img(pngs["gradcam.png"], "Grad-CAM"),
        "<h2>CNN feature maps</h2>",
    ]
    sections += [img(png, name) for name, png in pngs.items() if name.startswith("stage_")]
    path = out_dir / "index.html"
    asked = f"at {asked_s:g} s: " if asked_s is not None else ""
    title = f"What the model heard: {Path(w.uri).name} {asked}segment {w.start_s:.2f}-{w.end_s:.2f} s"
    path.write_text(page(title, "\n".join(sections)))
    return path
