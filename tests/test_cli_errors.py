"""The command line's contract for mistakes: one line on stderr, a documented exit status, no traceback."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from audify_batch.cli.main import build_parser, main
from tests.conftest import write_noise, write_tone
from tests.synthetic_output import write_synthetic_output

AUDIFY = Path(sys.executable).parent / "audify"


def one_error_line(err: str) -> str:
    """The single stderr line of a failed command (no traceback, nothing else)."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("audify: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    folder = tmp_path / "archive"
    folder.mkdir()
    write_noise(folder / "r.wav", 6.0)
    return folder


def label_args(archive: Path, out: Path, model: Path) -> list[str]:
    return [
        "label",
        str(archive),
        "--out",
        str(out),
        "--model",
        str(model),
        "--workers",
        "0",
        "--no-progress",
    ]


def test_label_into_an_existing_file_is_one_line(
    archive: Path, tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "not-a-folder"
    out.write_text("precious")
    assert main(label_args(archive, out, tiny_model_dir)) == 1
    captured = capsys.readouterr()
    one_error_line(captured.err)
    assert out.read_text() == "precious"


def test_label_on_cuda_without_cuda_is_one_line(
    archive: Path, tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "out"
    assert main([*label_args(archive, out, tiny_model_dir), "--device", "cuda"]) == 1
    assert "cuda" in one_error_line(capsys.readouterr().err).lower()


def test_label_top_k_above_the_labels_is_refused_before_writing(
    archive: Path, tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main([*label_args(archive, out, tiny_model_dir), "--top-k", "1000"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "--top-k 1000" in line
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


@pytest.mark.parametrize("sql", ["", "   ", "\n\t"])
def test_query_without_sql_is_one_line(tmp_path: Path, sql: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    write_synthetic_output(out)
    assert main(["query", str(out), sql]) == 1
    captured = capsys.readouterr()
    assert "empty SQL" in one_error_line(captured.err)
    assert captured.out == ""


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
        (lambda p: None, "no such file"),
    ],
    ids=["empty", "missing"],
)
def test_classify_a_bad_file_prints_the_label_reason_and_no_header(
    tmp_path: Path, tiny_model_dir: Path, make: object, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "take.wav"
    make(path)  # type: ignore[operator]
    assert main(["classify", str(path), "--model", str(tiny_model_dir)]) == 1
    captured = capsys.readouterr()
    assert reason in one_error_line(captured.err)
    assert captured.out == ""


def test_label_through_head_keeps_status_3(tmp_path: Path, tiny_model_dir: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    write_noise(archive / "good.wav", 6.0)
    (archive / "corrupt.wav").write_bytes(b"RIFF garbage")
    args = " ".join(label_args(archive, tmp_path / "out", tiny_model_dir))
    # head -1 reads one line and goes; `true` reads none: both close the pipe under the summary.
    for reader in ["head -1", "true"]:
        script = f"'{AUDIFY}' {args} | {reader}; echo \"status=${{PIPESTATUS[0]}}\" >&2"
        env = {**os.environ, "DO_NOT_TRACK": "1"}
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", script], capture_output=True, text=True, env=env, timeout=300
        )
        assert "status=3" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
        if reader == "head -1":
            assert done.stdout.startswith("run ") and len(done.stdout.splitlines()) == 1


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(commands.choices)


@pytest.mark.parametrize("command", sorted(subcommand_parsers()))
def test_help_documents_every_option_and_its_default(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100000")  # no wrapping: argparse breaks lines at hyphens in paths
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # one line: wrapping aside
    assert text.startswith(f"usage: audify {command}")
    for action in subcommand_parsers()[command]._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        name = action.option_strings[-1]
        assert action.help, f"{command} {name} has no help"
        if action.default is not None and action.default is not False:
            assert re.search(rf"{re.escape(name)}\b.*?\(default: {re.escape(str(action.default))}\)", text), (
                f"{command} {name}: no '(default: {action.default})' in its help"
            )


def test_an_unknown_option_shows_the_subcommand_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["label", "x", "--out", "y", "--bogus"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: audify label")
    assert "unrecognized arguments: --bogus" in err


def test_explain_writes_a_page_titled_with_the_asked_second_and_segment(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = write_tone(tmp_path / "tone.wav", 12.0, 16_000)
    out = tmp_path / "page"
    args = ["explain", str(recording), "--at", "7.3", "--model", str(tiny_model_dir)]
    assert main([*args, "--out", str(out)]) == 0
    html = (out / "index.html").read_text()
    title = re.search(r"<title>(.*?)</title>", html)
    assert title is not None
    assert "7.3 s" in title.group(1) and "5.00-10.00 s" in title.group(1)
    assert f"wrote {out / 'index.html'}" in capsys.readouterr().out


def test_explain_without_out_writes_under_audify_explain(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    recording = write_tone(tmp_path / "tone.wav", 12.0, 16_000)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["explain", str(recording), "--at", "7.3", "--model", str(tiny_model_dir)]) == 0
    pages = list((work / "audify-explain").glob("*/index.html"))
    assert len(pages) == 1
    printed = re.search(r"wrote (\S+index\.html)", capsys.readouterr().out)
    assert printed is not None and (work / printed.group(1)).resolve() == pages[0].resolve()
