"""Bad input named for what it is: replaced files, two spellings of one file, files cut short,
links that lead nowhere, folders with audio names, sources that name nothing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from audify_batch.cli.label import format_summary
from audify_batch.cli.main import main
from audify_batch.ingest.sources import NothingFoundError, discover, discover_all
from audify_batch.records import RunSummary
from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from audify_batch.store.query import run_sql
from tests.archive_builders import truncated_ogg, truncated_wav
from tests.conftest import write_noise

OLD_MTIME_NS = 1_600_000_000 * 10**9


def label(source: Path | str, out: Path, model_dir: Path) -> RunSummary:
    return label_archive(
        LabelConfig.of(source=str(source), out=str(out), model_dir=str(model_dir), workers=0)
    )


def current(out: Path) -> dict[str, tuple[str, str | None]]:
    """File name -> (status, error) of the `recordings` view."""
    rows = run_sql(str(out), "SELECT uri, status, error FROM recordings").rows
    return {Path(uri).name: (status, error) for uri, status, error in rows}


# 3. A same-size replacement that kept the old modification time is labeled again.


def test_same_size_replacement_with_the_old_mtime_is_relabeled(tiny_model_dir: Path, tmp_path: Path) -> None:
    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    for name, seed in (("a.wav", 1), ("b.wav", 2)):
        os.utime(write_noise(archive / name, 6.0, seed=seed), ns=(OLD_MTIME_NS, OLD_MTIME_NS))
    assert label(archive, out, tiny_model_dir).n_labeled == 2
    before = run_sql(str(out), "SELECT fingerprint FROM recordings WHERE uri LIKE '%a.wav'").rows
    size = (archive / "a.wav").stat().st_size
    write_noise(archive / "a.wav", 6.0, seed=3)  # new content, same size, then the old time back (cp -p)
    os.utime(archive / "a.wav", ns=(OLD_MTIME_NS, OLD_MTIME_NS))
    assert (archive / "a.wav").stat().st_size == size

    again = label(archive, out, tiny_model_dir)

    assert (again.n_labeled, again.n_skipped) == (1, 1)
    after = run_sql(str(out), "SELECT fingerprint FROM recordings WHERE uri LIKE '%a.wav'").rows
    assert after != before
    third = label(archive, out, tiny_model_dir)  # unchanged now: both skipped
    assert (third.n_labeled, third.n_skipped) == (0, 2)


# 4. One file, one recording, however SOURCE spells its path.


def test_relative_and_absolute_spellings_are_one_recording(tiny_model_dir: Path, tmp_path: Path) -> None:
    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    for i in range(2):
        write_noise(archive / f"r{i}.wav", 3.0, seed=i)
    relative = os.path.relpath(archive)  # from the test's working directory: '../..'-style
    dotted = f"{archive}/../{archive.name}"
    listing = tmp_path / "list.txt"
    listing.write_text(f"archive/r0.wav\n../{tmp_path.name}/archive/r0.wav\n{archive / 'r1.wav'}\n")
    expected = [str(archive / "r0.wav"), str(archive / "r1.wav")]

    for spelling in (str(archive), relative, dotted, str(listing)):
        assert [ref.uri for ref in discover(spelling)] == expected, spelling
    assert [ref.uri for ref in discover_all([relative, str(archive)])] == expected

    assert label(relative, out, tiny_model_dir).n_labeled == 2
    again = label(archive, out, tiny_model_dir)
    assert (again.n_labeled, again.n_skipped) == (0, 2)
    assert run_sql(str(out), "SELECT count(*) FROM recordings").rows == ((2,),)


def test_a_symbolic_link_is_keyed_by_its_own_path(tmp_path: Path) -> None:
    """Links are not followed for the key: a folder of links keeps its names."""
    store, links = tmp_path / "store", tmp_path / "links"
    store.mkdir()
    links.mkdir()
    target = write_noise(store / "0a1b2c.wav", 1.0)
    (links / "dog_bark.wav").symlink_to(target)

    (ref,) = discover(str(links))

    assert (ref.uri, ref.error, ref.size_bytes) == (str(links / "dog_bark.wav"), None, target.stat().st_size)


# 7. A file cut short is labeled as far as it is readable, and says so.


def test_truncated_wav_and_ogg_are_partial_with_their_readable_segments(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    truncated_wav(archive / "cut.wav")  # header: 30 s; data: 15 s
    truncated_ogg(archive / "cut.ogg")  # 30 s of Vorbis, its second half gone
    write_noise(archive / "whole.wav", 7.0)
    write_noise(archive / "whole.ogg", 7.0)

    summary = label(archive, out, tiny_model_dir)

    state = current(out)
    assert state["cut.wav"] == ("partial", "truncated: 15.0 s of 30.0 s declared")
    status, reason = state["cut.ogg"]
    assert status == "partial" and reason is not None
    assert reason.startswith("truncated: 14.4 s readable") and "Ogg" in reason
    assert state["whole.wav"] == state["whole.ogg"] == ("labeled", None)
    sql = "SELECT uri, n_segments, duration_s FROM recordings WHERE status = 'partial' ORDER BY uri"
    spans = "SELECT uri, count(*), max(end_s) FROM segments GROUP BY uri ORDER BY uri"
    segments = {Path(uri).name: (n, end_s) for uri, n, end_s in run_sql(str(out), spans).rows}
    for uri, n_segments, duration_s in run_sql(str(out), sql).rows:
        assert segments[Path(uri).name] == (n_segments, pytest.approx(duration_s))
    assert segments["cut.wav"] == (3, pytest.approx(15.0, abs=0.01))  # 5 s windows over 15 s
    assert segments["cut.ogg"] == (3, pytest.approx(14.376, abs=0.01))  # the last one 4.4 s, padded
    assert (summary.n_labeled, summary.n_partial, summary.n_failed) == (4, 2, 0)
    assert sorted(Path(uri).name for uri, _ in summary.warnings) == ["cut.ogg", "cut.wav"]
    printed = format_summary(summary)
    assert "4 labeled (2 partial: cut short)" in printed
    assert f"partial: {archive / 'cut.wav'}: truncated: 15.0 s of 30.0 s declared" in printed.splitlines()
    runs = run_sql(str(out), "SELECT n_labeled, n_failed FROM runs").rows
    assert runs == ((4, 0),)

    again = label(archive, out, tiny_model_dir)  # a re-read would give the same: skipped like labeled
    assert (again.n_labeled, again.n_skipped) == (0, 4)


def test_a_wav_cut_right_after_its_header_fails_saying_so(tiny_model_dir: Path, tmp_path: Path) -> None:
    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    path = truncated_wav(archive / "header_only.wav")
    path.write_bytes(path.read_bytes()[:44])

    summary = label(archive, out, tiny_model_dir)

    assert summary.n_failed == 1
    assert current(out)["header_only.wav"] == ("failed", "truncated: 0.0 s of 30.0 s declared")


# 8. Links that lead nowhere, folders with audio names, sources that name nothing.


def test_broken_links_loops_and_audio_named_folders_fail_as_what_they_are(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    write_noise(archive / "good.wav", 2.0)
    (archive / "broken.wav").symlink_to("/nonexistent/take1.wav")
    (archive / "loop.wav").symlink_to("loop.wav")
    (archive / "folder.wav").mkdir()
    (archive / "folder.wav" / "notes.txt").write_text("not audio")
    (archive / "to_folder.flac").symlink_to(archive / "folder.wav")

    summary = label(archive, out, tiny_model_dir)

    assert (summary.n_labeled, summary.n_failed) == (1, 4)
    assert current(out) == {
        "good.wav": ("labeled", None),
        "broken.wav": ("failed", "broken symbolic link to /nonexistent/take1.wav"),
        "loop.wav": ("failed", "symbolic link loop"),
        "folder.wav": ("failed", "is a directory"),
        "to_folder.flac": ("failed", "is a directory"),
    }


def test_sources_that_name_no_recordings_are_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "readme.txt").write_text("no audio here")
    (tmp_path / "empty.txt").write_text("# nothing listed\n\n")

    with pytest.raises(NothingFoundError, match=f"^no audio files under {empty}$"):
        discover(str(empty))
    with pytest.raises(NothingFoundError, match=r"no audio files under .*texts \(1 file, none named like"):
        discover(str(texts))
    with pytest.raises(NothingFoundError, match=r"^no files match .*\*\.flac$"):
        discover(str(empty / "*.flac"))
    with pytest.raises(NothingFoundError, match=r"^no audio files match .*texts/\*$"):
        discover(str(texts / "*"))
    with pytest.raises(NothingFoundError, match=r"^no recordings listed in .*empty\.txt$"):
        discover(str(tmp_path / "empty.txt"))
    with pytest.raises(NothingFoundError, match="no recordings in any of 2 sources"):
        discover_all([str(empty), str(texts)])


@pytest.mark.parametrize("kind", ["folder", "glob", "list"])
def test_label_with_nothing_to_label_prints_one_line_and_exits_1(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty.lst").write_text("")
    source = {"folder": "empty", "glob": "empty/*.wav", "list": "empty.lst"}[kind]
    argv = ["label", str(tmp_path / source), "--out", str(tmp_path / "out"), "--model", str(tiny_model_dir)]

    code = main([*argv, "--workers", "0", "--no-progress"])

    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("audify: error: no ") and str(tmp_path / source) in line
    assert not (tmp_path / "out" / "recordings").exists()


def test_a_folder_named_like_audio_inside_a_glob_gets_a_row(tmp_path: Path) -> None:
    (tmp_path / "x.wav").mkdir()
    shutil.copy(write_noise(tmp_path / "y.wav", 1.0), tmp_path / "z.wav")

    refs = {Path(ref.uri).name: ref.error for ref in discover(str(tmp_path / "*.wav"))}

    assert refs == {"x.wav": "is a directory", "y.wav": None, "z.wav": None}
