"""The HTML run report and the segment explanation: content, and as a person sees them in Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from audify_batch.cli.main import main
from audify_batch.model.checkpoint import load_checkpoint
from audify_batch.model.inference import Precision, predict_batch, resolve_precision
from audify_batch.report.explain import explain_window, read_window, segment_start_s
from audify_batch.report.run_report import ReportLimits, html_report
from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from audify_batch.store.query import run_sql
from tests.browser import check_page, screenshot
from tests.conftest import write_noise, write_tone


@pytest.fixture(scope="module")
def labeled(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("report")
    archive = root / "archive"
    archive.mkdir()
    for i in range(5):
        write_noise(archive / f"noise{i}.wav", 6.0 + 4 * i, seed=i)
    write_tone(archive / "tone.flac", 9.0, 22_050)
    (archive / "broken.wav").write_bytes(b"RIFF....not audio")
    out = root / "out"
    label_archive(LabelConfig.of(source=str(archive), out=str(out), model_dir=str(tiny_model_dir), workers=0))
    return archive, out


def test_report_has_every_section_and_summarises_what_it_cuts(labeled: tuple[Path, Path]) -> None:
    _, out = labeled
    html = html_report(out, limits=ReportLimits(labels=3, recordings=4, review=5))
    for heading in [
        "Run provenance",
        "Labels over the archive",
        "Labels per recording",
        "Timelines",
        "Events",
        "Confidence",
        "Least confident",
        "Close calls",
        "Failures (1)",
    ]:
        assert heading in html
    assert html.count("<img ") == 4 and "data:image/png;base64," in html
    assert "broken.wav" in html and "tiny-fake-0.1" in html
    assert "the 4 recordings with most segments; 2 more" in html
    assert "http://" not in html and "https://" not in html  # self-contained
    # The figures the page states are the counts over the output.
    labeled, failed, audio_s = run_sql(
        str(out),
        "SELECT count(*) FILTER (status = 'labeled'), count(*) FILTER (status = 'failed'), "
        "sum(duration_s) FILTER (status = 'labeled') FROM recordings",
    ).rows[0]
    n_segments = run_sql(str(out), "SELECT count(*) FROM segments").rows[0][0]
    assert (labeled, failed, n_segments) == (6, 1, 2 + 2 + 3 + 4 + 5 + 2)  # 6..22 s of noise, 9 s tone
    assert (
        f"{labeled} recordings labeled, {failed} failed, {n_segments} segments, "
        f"{audio_s / 3600:.2f} h of audio." in html
    )
    assert f"Failures ({failed})" in html


def test_report_links_segment_ids_and_says_what_the_run_used(labeled: tuple[Path, Path]) -> None:
    _, out = labeled
    html = html_report(out, segment_url=lambda i: f"segments/{i}?model=tiny-fake-0.1")

    # Every segment (18, fewer than a queue's 20 rows) in both review queues, linked by its id.
    links = re.findall(r'<td><a href="segments/([^"?]+)\?model=tiny-fake-0\.1">([^<]+)</a></td>', html)
    ids = run_sql(str(out), "SELECT recording_id || ':' || segment_index FROM segments").rows
    assert all(target == text for target, text in links) and len(links) == 2 * len(ids) == 36
    assert {target for target, _ in links} == {i for (i,) in ids}
    # The runs row records what the run used beside what was asked; the report shows it first.
    (config_json,) = run_sql(str(out), "SELECT config_json FROM runs").rows[0]
    used = json.loads(config_json)["used"]
    precision = resolve_precision(Precision.AUTO, torch.device("cpu")).value
    threads = used.pop("torch_threads")
    assert used.pop("worker_start") is None  # no workers to start
    assert used.pop("freed_memory_kept") is True  # CPU, glibc: activations keep their pages
    assert used == {"device": "cpu", "precision": precision, "workers": 0} and threads >= 1
    line = f"used: device cpu, {precision}, 0 workers (decoding in the main process), {threads} thread"
    assert line in html and html.index(line) < html.index("asked:")


def test_explanation_maps_line_up_with_the_spectrogram(tiny_model_dir: Path, tmp_path: Path) -> None:
    path = write_tone(tmp_path / "tone.wav", 12.0, 44_100)
    model, card = load_checkpoint(tiny_model_dir)
    window = read_window(
        str(path), segment_start_s(7.3, card.segment_s), card.frontend.sample_rate_hz, card.segment_s
    )
    assert (window.start_s, window.end_s) == (5.0, 10.0)
    expl = explain_window(model, card, window, k=3)
    assert expl.gradcam.shape == expl.log_mel.shape == (64, 251)
    assert expl.gradcam.min() >= 0.0 and expl.gradcam.max() <= 1.0
    assert list(expl.stages) == list(model.net.arch.stage_names)
    # The top-3 are the model's own fp32 probabilities for this window, highest first.
    probs, _ = predict_batch(model, torch.from_numpy(window.waveform)[None], Precision.FP32)
    order = np.argsort(-probs[0].numpy(), kind="stable")[:3]
    assert expl.labels == tuple(card.labels[i] for i in order)
    np.testing.assert_allclose(expl.confidences, probs[0].numpy()[order], rtol=1e-5, atol=1e-6)
    assert list(expl.confidences) == sorted(expl.confidences, reverse=True)


def test_explain_cli_by_time_and_by_segment_id(
    labeled: tuple[Path, Path], tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive, out = labeled
    by_time = tmp_path / "by-time"
    assert (
        main(
            [
                "explain",
                str(archive / "noise2.wav"),
                "--at",
                "11",
                "--model",
                str(tiny_model_dir),
                "--out",
                str(by_time),
            ]
        )
        == 0
    )
    assert (by_time / "index.html").is_file() and len(list(by_time.glob("*.png"))) == 4 + 3
    sql = "SELECT recording_id FROM segments WHERE uri LIKE '%noise2.wav' LIMIT 1"
    rid = run_sql(str(out), sql).rows[0][0]
    by_id = tmp_path / "by-id"
    assert (
        main(
            [
                "explain",
                str(out),
                "--segment",
                f"{rid}:2",
                "--model",
                str(tiny_model_dir),
                "--out",
                str(by_id),
            ]
        )
        == 0
    )
    assert (by_time / "gradcam.png").read_bytes() == (by_id / "gradcam.png").read_bytes()
    capsys.readouterr()
    assert main(["explain", str(archive / "noise0.wav"), "--at", "60", "--model", str(tiny_model_dir)]) == 1
    assert "past the end" in capsys.readouterr().err


@pytest.mark.slow
def test_pages_render_in_chromium(labeled: tuple[Path, Path], tiny_model_dir: Path, tmp_path: Path) -> None:
    archive, out = labeled
    report = tmp_path / "report.html"
    assert main(["report", str(out), "--html", str(report)]) == 0
    explained = tmp_path / "explain"
    assert (
        main(
            [
                "explain",
                str(archive / "tone.flac"),
                "--at",
                "1",
                "--model",
                str(tiny_model_dir),
                "--out",
                str(explained),
            ]
        )
        == 0
    )
    for page, n_images in [(report, 4), (explained / "index.html", 4 + 3)]:
        check = check_page(page)
        assert (check.n_images, check.images_ok, check.console) == (n_images, True, [])
        png = screenshot(page, tmp_path / f"{page.stem}.png")
        assert png.stat().st_size > 10_000
