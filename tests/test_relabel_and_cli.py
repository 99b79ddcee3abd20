"""`audify label`, `audify query` from the command line: reruns, relabeling, exit statuses, errors.

Driven through the CLI entry point only (its flags are the contract), on three 10-second FLACs of
real ESC-50 clips labeled by the small fake model.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from audify_batch.cli.main import main
from audify_batch.store.query import run_sql
from tests.archive_builders import LongRecording, real_archive

AUDIFY = Path(sys.executable).parent / "audify"
N_FILES = 3  # each two whole 5-second clips: 10 s


@pytest.fixture
def archive(shared_data: Path, tmp_path: Path) -> list[LongRecording]:
    return real_archive(shared_data, tmp_path / "archive", n_files=N_FILES, clips_per_file=2)


def label(
    archive: Path, out: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], *options: str
) -> tuple[int, str]:
    """Run `audify label` (fp32 unless told, decoding in the main process); exit status and stdout."""
    capsys.readouterr()
    argv = ["label", str(archive), "--out", str(out), "--model", str(model_dir), "--workers", "0"]
    argv += ["--no-progress", *options]
    if "--precision" not in options:
        argv += ["--precision", "fp32"]
    code = main(argv)
    return code, capsys.readouterr().out


def recordings_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("recordings:"))


def counts(n_labeled: int, n_skipped: int, n_failed: int = 0) -> str:
    return (
        f"recordings: {n_labeled + n_skipped + n_failed} found, {n_labeled} labeled, "
        f"{n_skipped} unchanged (skipped), {n_failed} failed"
    )


def runs(out: Path) -> list[tuple[str, int, int, int]]:
    """(config_hash, n_labeled, n_skipped, n_segments) of every run, oldest first."""
    sql = "SELECT config_hash, n_labeled, n_skipped, n_segments FROM runs ORDER BY started_at, run_id"
    return [tuple(row) for row in run_sql(str(out), sql).rows]


def current_segments(out: Path) -> list[tuple[str, float, int, str]]:
    """(file name, start_s, number of labels, config_hash) of every current segment."""
    sql = "SELECT uri, start_s, len(labels), config_hash FROM segments ORDER BY uri, start_s"
    return [(Path(uri).name, start_s, k, h) for uri, start_s, k, h in run_sql(str(out), sql).rows]


def grid(starts_s: list[float], k: int, hash_: str) -> list[tuple[str, float, int, str]]:
    return [(f"long{i:02d}.flac", s, k, hash_) for i in range(N_FILES) for s in starts_s]


def test_same_settings_skip_and_a_new_top_k_relabels(
    archive: list[LongRecording], tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out = archive[0].path.parent, tmp_path / "out"
    code, stdout = label(source, out, tiny_model_dir, capsys, "--top-k", "3")
    assert (code, recordings_line(stdout)) == (0, counts(3, 0))
    first_hash = runs(out)[0][0]
    assert current_segments(out) == grid([0.0, 5.0], 3, first_hash)
    top = "SELECT uri, segment_index, labels, confidences FROM segments ORDER BY uri, segment_index"
    top3 = run_sql(str(out), top).rows

    code, stdout = label(source, out, tiny_model_dir, capsys, "--top-k", "3")
    assert (code, recordings_line(stdout)) == (0, counts(0, 3))
    assert "segments: 0," in stdout
    assert current_segments(out) == grid([0.0, 5.0], 3, first_hash)  # nothing rewritten

    code, stdout = label(source, out, tiny_model_dir, capsys, "--top-k", "2")
    assert (code, recordings_line(stdout)) == (0, counts(3, 0))
    history = runs(out)
    new_hash = history[-1][0]
    assert new_hash != first_hash
    assert history == [(first_hash, 3, 0, 6), (first_hash, 0, 3, 0), (new_hash, 3, 0, 6)]
    assert current_segments(out) == grid([0.0, 5.0], 2, new_hash)  # the old rows no longer show
    # The same model on the same audio: the new top-2 are the first two of the top-3 before.
    top2 = run_sql(str(out), top).rows
    assert [(u, i, ls, cs) for u, i, ls, cs in top2] == [(u, i, ls[:2], cs[:2]) for u, i, ls, cs in top3]

    code, stdout = label(source, out, tiny_model_dir, capsys, "--top-k", "2")
    assert (code, recordings_line(stdout)) == (0, counts(0, 3))


def test_a_new_hop_relabels_on_the_new_grid(
    archive: list[LongRecording], tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out = archive[0].path.parent, tmp_path / "out"
    assert label(source, out, tiny_model_dir, capsys, "--top-k", "3")[0] == 0
    first_hash = runs(out)[0][0]
    code, stdout = label(source, out, tiny_model_dir, capsys, "--top-k", "3", "--hop-s", "2.5")
    assert (code, recordings_line(stdout)) == (0, counts(3, 0))
    new_hash = runs(out)[-1][0]
    assert new_hash != first_hash and runs(out)[-1][1:] == (3, 0, 9)
    assert current_segments(out) == grid([0.0, 2.5, 5.0], 3, new_hash)  # 5 s windows every 2.5 s
    code, stdout = label(source, out, tiny_model_dir, capsys, "--top-k", "3", "--hop-s", "2.5")
    assert (code, recordings_line(stdout)) == (0, counts(0, 3))


def test_another_precision_relabels(
    archive: list[LongRecording], tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out = archive[0].path.parent, tmp_path / "out"
    assert label(source, out, tiny_model_dir, capsys, "--precision", "fp32")[0] == 0
    fp32_hash = runs(out)[0][0]
    sql = "SELECT uri, segment_index, labels[1], confidences[1] FROM segments ORDER BY uri, segment_index"
    fp32_rows = run_sql(str(out), sql).rows
    code, stdout = label(source, out, tiny_model_dir, capsys, "--precision", "bf16")
    assert (code, recordings_line(stdout)) == (0, counts(3, 0))
    bf16_hash = runs(out)[-1][0]
    assert bf16_hash != fp32_hash
    assert current_segments(out) == grid([0.0, 5.0], 5, bf16_hash)
    bf16_rows = run_sql(str(out), sql).rows
    assert [r[:2] for r in bf16_rows] == [r[:2] for r in fp32_rows]
    for (*_, fp32_conf), (*_, bf16_conf) in zip(fp32_rows, bf16_rows, strict=True):
        assert bf16_conf == pytest.approx(fp32_conf, abs=0.05)  # bf16 CNN: close, not equal
    code, stdout = label(source, out, tiny_model_dir, capsys, "--precision", "bf16")
    assert (code, recordings_line(stdout)) == (0, counts(0, 3))
    # Back to fp32: the current rows are bf16 ones, so the recordings are labeled again.
    code, stdout = label(source, out, tiny_model_dir, capsys, "--precision", "fp32")
    assert (code, recordings_line(stdout)) == (0, counts(3, 0))
    assert runs(out)[-1][0] == fp32_hash and run_sql(str(out), sql).rows == fp32_rows


def test_label_exit_status_is_3_when_a_recording_failed_and_names_it(
    archive: list[LongRecording], tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = archive[0].path.parent
    code, stdout = label(source, tmp_path / "clean", tiny_model_dir, capsys)
    assert (code, recordings_line(stdout)) == (0, counts(3, 0))
    assert "failed:" not in stdout
    corrupt = source / "corrupt.flac"
    corrupt.write_bytes(b"fLaC" + bytes(range(256)) * 8)
    out = tmp_path / "out"
    code, stdout = label(source, out, tiny_model_dir, capsys)
    assert (code, recordings_line(stdout)) == (3, counts(3, 0, n_failed=1))
    failed = [line for line in stdout.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and failed[0].startswith(f"failed: {corrupt}: ")
    status = run_sql(str(out), "SELECT uri, status FROM recordings WHERE status = 'failed'").rows
    assert status == ((str(corrupt), "failed"),)
    # The failure stays a failure on a rerun (it is tried again), the labeled ones are skipped.
    code, stdout = label(source, out, tiny_model_dir, capsys)
    assert (code, recordings_line(stdout)) == (3, counts(0, 3, n_failed=1))


@pytest.fixture(scope="module")
def labeled_out(shared_data: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 10-second recordings labeled with top-3: 6 segments."""
    root = tmp_path_factory.mktemp("query")
    real_archive(shared_data, root / "archive", n_files=N_FILES, clips_per_file=2)
    out = root / "out"
    argv = ["label", str(root / "archive"), "--out", str(out), "--model", str(tiny_model_dir)]
    assert main([*argv, "--top-k", "3", "--workers", "0", "--no-progress"]) == 0
    return out


def test_query_prints_the_rows_and_exits_0(labeled_out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    sql = "SELECT count(*) AS n, count(DISTINCT uri) AS n_uris FROM segments"
    assert main(["query", str(labeled_out), sql]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["n  n_uris", "-  ------", "6       3"]
    assert captured.err == ""
    # Through the console script too: one row per recording, in order, and nothing more.
    by_uri = "SELECT uri, count(*) AS n FROM segments GROUP BY uri ORDER BY uri"
    result = subprocess.run([str(AUDIFY), "query", str(labeled_out), by_uri], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    archive = labeled_out.parent / "archive"
    assert rows == [[str(archive / f"long{i:02d}.flac"), "2"] for i in range(N_FILES)]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELEC count(*) FROM segments", "syntax error"),
        ("SELECT count(*) FROM no_such_view", "no_such_view"),
    ],
    ids=["syntax", "unknown-view"],
)
def test_bad_query_is_an_error_without_traceback(labeled_out: Path, sql: str, message: str) -> None:
    result = subprocess.run([str(AUDIFY), "query", str(labeled_out), sql], capture_output=True, text=True)
    assert result.returncode == 1 and result.stdout == ""
    assert "Traceback" not in result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("audify: error:") and message in first


def test_bad_query_error_is_one_line(labeled_out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["query", str(labeled_out), "SELEC 1"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
