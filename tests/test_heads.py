"""Custom heads (review/heads.py, head_fit.py, head_apply.py, ``audify head``): trained on stored
embeddings from verdicts, saved under OUT/heads/, applied to every current segment."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest

from audify_batch.cli.main import main
from audify_batch.review.calibrate import calibrate
from audify_batch.review.head_apply import apply_head
from audify_batch.review.head_fit import (
    CrossValidation,
    LinearHead,
    average_precision,
    cross_validate,
    fit_logistic,
)
from audify_batch.review.heads import (
    HeadCard,
    TrainedHead,
    load_head,
    save_head,
    train_head,
)
from audify_batch.store import schema as S
from audify_batch.store.annotations import Annotation, AnnotationWriter, Verdict
from audify_batch.store.query import connect, fetch
from tests.synthetic_output import (
    A_M1,
    M1,
    MODEL_NAME,
    RUN1,
    RUN3,
    T0,
    URI_A,
    Rec,
    recording_id,
    write_part,
    write_run,
    write_synthetic_output,
)

DIM = 16
RECORDINGS, PER_RECORDING = 8, 25
RUN5 = "20240505T100000Z-9c9d"


def uri_of(k: int) -> str:
    return f"file:///archive/h/{k:02d}.wav"


def verdicts(keys: list[tuple[int, int]], label: str, present: bool) -> list[Annotation]:
    verdict = Verdict.PRESENT if present else Verdict.ABSENT
    return [
        Annotation(M1, f"{recording_id(uri_of(k))}:{i}", uri_of(k), float(i), float(i + 1), label, verdict)
        for k, i in keys
    ]


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 segments of 16-d noise; 30 of them shifted along one direction. Reviewers marked those
    30 'planted' present and 30 others absent, 30 random segments 'noise' present and 30 absent,
    and 3 'rare' present, 10 absent."""
    out = tmp_path_factory.mktemp("planted") / "out"
    rng = np.random.default_rng(7)
    keys = [(k, i) for k in range(RECORDINGS) for i in range(PER_RECORDING)]
    order = rng.permutation(len(keys))
    positives = [keys[j] for j in order[:30]]
    direction = rng.standard_normal(DIM)
    direction /= np.linalg.norm(direction)
    embeddings = {key: rng.standard_normal(DIM).astype(np.float32) for key in keys}
    for key in positives:
        embeddings[key] = (embeddings[key] + 4.0 * direction).astype(np.float32)
    recs = [
        Rec(
            uri_of(k),
            S.STATUS_LABELED,
            [("dog", 0.5)] * PER_RECORDING,
            embeddings={i: embeddings[k, i] for i in range(PER_RECORDING)},
        )
        for k in range(RECORDINGS)
    ]
    write_part(out, M1, RUN1, 0, recs[:4], DIM, T0)
    write_part(out, M1, RUN1, 1, recs[4:], DIM, T0)
    write_run(out, M1, RUN1, T0, recs)
    shuffled = [keys[j] for j in rng.permutation(len(keys))]
    writer = AnnotationWriter(str(out))
    writer.append(
        verdicts(positives, "planted", True) + verdicts([keys[j] for j in order[30:60]], "planted", False)
    )
    writer.append(verdicts(shuffled[:30], "noise", True) + verdicts(shuffled[30:60], "noise", False))
    writer.append(verdicts(shuffled[:3], "rare", True) + verdicts(shuffled[3:13], "rare", False))
    return out


def test_a_head_learns_a_planted_direction(planted: Path) -> None:
    trained = train_head(planted, "planted", presumed_per_positive=2)
    card, cv = trained.card, trained.cv
    assert (card.n_present, card.n_absent, card.n_presumed_negative) == (30, 30, 60)
    assert (card.model, card.model_name, card.embedding_dim, card.labels) == (
        M1,
        MODEL_NAME,
        DIM,
        ("planted",),
    )
    con = connect(planted)
    try:
        ids = fetch(con, "SELECT annotation_id FROM annotation_history WHERE label = 'planted' ORDER BY 1")
    finally:
        con.close()
    assert card.annotation_ids == tuple(ids.column("annotation_id"))
    assert cv.folds == 5 and cv.precision >= 0.9 and cv.recall >= 0.9 and cv.average_precision >= 0.95
    assert card.cv["average_precision"] == cv.average_precision


def test_random_labels_give_a_head_near_chance(planted: Path) -> None:
    cv = train_head(planted, "noise", presumed_per_positive=0).cv
    assert (cv.n_positive, cv.n_negative) == (30, 30)
    assert 0.25 < cv.average_precision < 0.75


def test_fit_and_average_precision_on_known_cases() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 4)).astype(np.float32) * np.array([1, 10, 0.1, 1], np.float32) + 3
    y = (x[:, 0] > 3).astype(np.int64)
    head = fit_logistic(x, y)
    assert ((head.scores(x) >= 0.5) == y).mean() > 0.95  # standardised: the scales do not matter
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0])) == pytest.approx(
        (1 + 2 / 3) / 2
    )
    with pytest.raises(ValueError, match="at least 5 positive"):
        cross_validate(x[:8], np.array([1, 1, 1, 1, 0, 0, 0, 0]))


def test_cli_errors_are_one_line(planted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args, message in (
        (
            ["train", "--name", "rare"],
            "at least 5 positive and 5 negative examples, got 3 and 25",
        ),  # 10 absent, 15 presumed
        (["train", "--name", "nothing"], "no reviewed segments of label 'nothing'"),
        (["train", "--name", "bad name"], "a head's name is"),
        (["apply", "--head", "absent"], "no custom head 'absent'"),
    ):
        assert main(["head", args[0], str(planted), *args[1:]]) == 1
        captured = capsys.readouterr()
        assert message in one_error_line(captured.err) and captured.out == ""


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("audify: error: "), err
    return lines[0]


def test_a_saved_head_loads_back_and_a_torn_save_does_not(tmp_path: Path) -> None:
    out = write_synthetic_output(tmp_path / "out").out
    trained = constructed_head()
    save_head(out, trained)
    card, head = load_head(out, "probe")
    assert card == trained.card and np.array_equal(head.weight, trained.head.weight) and head.bias == 0.25
    card_path = out / "heads" / "probe" / "card.json"
    data = json.loads(card_path.read_text())
    card_path.write_text(json.dumps(data | {"head_version": "another"}))
    with pytest.raises(ValueError, match="differ"):
        load_head(out, "probe")
    card_path.write_text(json.dumps(data | {"format_version": 2}))
    with pytest.raises(ValueError, match="version 2"):
        load_head(out, "probe")


def constructed_head(dim: int = 8) -> TrainedHead:
    weight = np.linspace(-1, 1, dim).astype(np.float32)
    cv = CrossValidation(5, 5, 5, 1.0, 1.0, 1.0)
    card = HeadCard(
        name="probe",
        label="dog",
        model=M1,
        model_name=MODEL_NAME,
        model_version="1.0.0",
        embedding_dim=dim,
        head_version="20240601T000000000000Z-abcdef",
        created_at="2024-06-01T00:00:00+00:00",
        n_present=5,
        n_absent=5,
        n_presumed_negative=0,
        annotation_ids=(),
        cv={},
    )
    return TrainedHead(card, LinearHead(weight, 0.25), cv)


def write_story(out: Path, legacy: bool) -> Path:
    """The synthetic story (debris, superseded and failed recordings) with A relabeled in RUN5, so
    that RUN1's first part holds a current recording (B) and a superseded one (A); and a head.
    RUN5's part is always in the legacy layout (no ``embedding_f16``); the others only if ``legacy``."""
    write_synthetic_output(out, legacy=legacy)
    relabel = [Rec(URI_A, S.STATUS_LABELED, A_M1[:4])]
    write_part(out, M1, RUN5, 0, relabel, 8, T0 + timedelta(days=4), legacy=True)
    write_run(out, M1, RUN5, T0 + timedelta(days=4), relabel)
    save_head(out, constructed_head())
    return out


@pytest.fixture
def story(tmp_path: Path) -> Path:
    """Parts of both layouts: RUN5's legacy, the others as the sink writes them."""
    return write_story(tmp_path / "out", legacy=False)


def half_runs(out: Path) -> set[str]:
    """The runs whose M1 segments parts carry ``embedding_f16``."""
    parts = (out / S.SEGMENTS / f"{S.MODEL_PARTITION}={M1}").glob("part-*.parquet")
    return {p.name[5:-14] for p in parts if S.EMBEDDING_F16 in pq.read_schema(p).names}


def current_scores(out: Path) -> dict[tuple[str, int, str], float]:
    """Expected: sigmoid(x . w + b) of every current M1 segment, keyed by (recording, index, run); x
    rounded to float16 where the segment's part carries ``embedding_f16`` (what the apply reads)."""
    head = constructed_head().head
    half = half_runs(out)
    con = connect(out)
    try:
        rows = fetch(
            con,
            "SELECT recording_id, segment_index, run_id, embedding FROM segments "
            "WHERE model = getvariable('m')",
            {"m": M1},
        ).rows
    finally:
        con.close()
    dtype = {True: np.float16, False: np.float32}
    return {
        (r, i, run): float(head.scores(np.array([e], dtype[run in half]).astype(np.float32))[0])
        for r, i, run, e in rows
    }


def stored_scores(out: Path) -> dict[tuple[str, int, str], float]:
    con = connect(out)
    try:
        rows = fetch(con, "SELECT recording_id, segment_index, run_id, score, head FROM head_scores").rows
    finally:
        con.close()
    assert all(row[4] == "probe" for row in rows)
    scores = {(r, i, run): s for r, i, run, s, _ in rows}
    assert len(scores) == len(rows)  # one score per segment
    return scores


def test_apply_scores_every_current_segment_once(story: Path) -> None:
    result = apply_head(story, "probe")
    expected = current_scores(story)
    assert len(expected) == 4 + 3 + 2 + 2  # A (RUN5), B, D (RUN2), G (RUN3 part 0)
    assert result.n_segments == len(expected) and result.model == M1
    stored = stored_scores(story)
    assert stored.keys() == expected.keys()
    assert all(stored[key] == pytest.approx(value, abs=1e-6) for key, value in expected.items())
    a = recording_id(URI_A)
    assert {run for (r, _, run) in stored if r == a} == {RUN5}  # not RUN1 (superseded), not RUN3 (debris)
    assert not any(run == RUN3 and i >= 2 for (_, i, run) in stored)  # no copy of G's rows from the debris


def test_apply_again_leaves_one_set_of_scores(story: Path) -> None:
    first = apply_head(story, "probe")
    folder = story / "head_scores" / "head=probe"
    # A killed older apply's part, and a newer one still being written: neither shows.
    older = folder / "part-20000101T000000000000Z-000000-00000.parquet"
    newer = folder / "part-29990101T000000000000Z-ffffff-00000.parquet"
    written = next(folder.glob(f"part-{first.apply_id}-*.parquet"))
    for stray in (older, newer):
        stray.write_bytes(written.read_bytes())
    assert len(stored_scores(story)) == first.n_segments
    second = apply_head(story, "probe")
    assert second.n_removed == 3  # the first apply's part and marker, the older stray
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        [f"commit-{second.apply_id}.json", f"part-{second.apply_id}-00000.parquet", newer.name]
    )
    assert stored_scores(story) == pytest.approx(current_scores(story), abs=1e-6)


def test_apply_reads_the_float16_copy_where_a_part_has_one(story: Path) -> None:
    assert half_runs(story) == {RUN1, "20240502T100000Z-3c4d", RUN3}  # RUN5's part is legacy
    apply_head(story, "probe")
    stored, expected = stored_scores(story), current_scores(story)
    assert stored.keys() == expected.keys()
    assert all(stored[k] == pytest.approx(v, abs=1e-6) for k, v in expected.items())
    head, con = constructed_head().head, connect(story)
    try:
        rows = fetch(con, "SELECT recording_id, segment_index, run_id, embedding FROM segments").rows
    finally:
        con.close()
    float32 = {(r, i, run): float(head.scores(np.array([e], np.float32))[0]) for r, i, run, e in rows}
    differs = [k for k in expected if abs(float32[k] - stored[k]) > 1e-6]
    assert differs and all(k[2] != RUN5 for k in differs)  # float16 rounding shows, only where read
    assert max(abs(float32[k] - stored[k]) for k in expected) < 1e-3


def test_apply_through_the_cache_gives_the_same_scores(tmp_path: Path) -> None:
    story = write_story(tmp_path / "out", legacy=True)
    assert half_runs(story) == set()
    cache = tmp_path / "cache"
    for _ in range(2):  # fills the cache, then reads it
        apply_head(story, "probe", cache_dir=cache, rows_per_part=5)
        stored = stored_scores(story)
        assert stored.keys() == current_scores(story).keys()
        assert all(stored[k] == pytest.approx(v, abs=1e-6) for k, v in current_scores(story).items())
    cached = sorted(p.name for p in cache.rglob("*.arrow"))
    # Parts with current rows only: RUN1's first (B), RUN2's second (D), RUN3's first (G), RUN5's.
    assert cached == sorted(
        f"part-{run}-{seq:05d}.arrow"
        for run, seq in ((RUN1, 0), ("20240502T100000Z-3c4d", 1), (RUN3, 0), (RUN5, 0))
    )


def test_cli_trains_applies_and_calibrates_a_head(planted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["head", "train", str(planted), "--name", "planted", "--presumed-per-positive", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        f"head planted for 'planted' on model {M1} (16-d embeddings): "
        "30 present, 30 absent, 30 presumed negative"
    )
    assert lines[1].startswith("cross-validation (5 folds): precision ")
    assert main(["head", "apply", str(planted), "--head", "planted"]) == 0
    assert f"head planted: scored 200 segments of model {M1}" in capsys.readouterr().out
    con = connect(planted)
    try:
        result = calibrate(con, "planted", model=M1, head="planted", target_precision=0.9)
    finally:
        con.close()
    assert (result.n_reviewed, result.n_present) == (60, 30)
    assert result.threshold is not None and result.threshold.precision >= 0.9
    assert main(["calibrate", str(planted), "--head", "planted", "--no-save"]) == 0
    assert (
        "'planted', scores of custom head planted: 60 reviewed segments, 30 present"
        in capsys.readouterr().out
    )


def test_train_and_apply_on_object_storage(tmp_path: Path) -> None:
    from tests.s3_server import moto_s3

    local = write_synthetic_output(tmp_path / "out").out
    con = connect(local)
    try:
        sql = "SELECT recording_id, segment_index, uri FROM segments WHERE model = getvariable('m')"
        rows = fetch(con, sql, {"m": M1}).rows
    finally:
        con.close()
    with moto_s3():
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        fs.mkdir("heads-test")
        fs.put(str(local), "heads-test/out", recursive=True)
        out = "s3://heads-test/out"
        AnnotationWriter(out).append(
            [
                Annotation(M1, f"{r}:{i}", uri, float(i), float(i + 1), "dog", verdict)
                for (r, i, uri), verdict in zip(
                    sorted(rows)[:10], [Verdict.PRESENT] * 5 + [Verdict.ABSENT] * 5, strict=True
                )
            ]
        )
        trained = train_head(out, "dog")
        assert (trained.card.n_present, trained.card.n_absent, trained.card.n_presumed_negative) == (5, 5, 4)
        save_head(out, trained)
        assert load_head(out, "dog")[0] == trained.card
        for _ in range(2):
            assert apply_head(out, "dog").n_segments == len(rows)
        assert len(fs.find("heads-test/out/head_scores")) == 2  # one part, one marker
        con = connect(out)
        try:
            assert fetch(con, "SELECT count(*) FROM head_scores").rows == ((len(rows),),)
        finally:
            con.close()


def test_a_recording_labeled_again_after_the_apply_shows_no_stale_scores(story: Path) -> None:
    apply_head(story, "probe")
    a = recording_id(URI_A)
    assert any(r == a for (r, _, _) in stored_scores(story))
    run6 = "20240606T100000Z-6e6e"  # A labeled again, other windows: its RUN5 scores are stale
    relabel = [Rec(URI_A, S.STATUS_LABELED, A_M1[:2])]
    write_part(story, M1, run6, 0, relabel, 8, T0 + timedelta(days=5))
    write_run(story, M1, run6, T0 + timedelta(days=5), relabel)
    assert not any(r == a for (r, _, _) in stored_scores(story))
    apply_head(story, "probe")
    assert {run for (r, _, run) in stored_scores(story) if r == a} == {run6}
