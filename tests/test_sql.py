"""The DuckDB views and report queries of sql/, over the synthetic OUT of tests/synthetic_output.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from audify_batch.store import query as Q
from tests.synthetic_output import (
    ERROR_C2,
    ERROR_E,
    M1,
    M2,
    QUOTE_LABEL,
    RUN1,
    RUN2,
    RUN3,
    RUN4,
    URI_A,
    URI_B,
    URI_C,
    URI_D,
    URI_E,
    URI_G,
    write_failed_only_output,
    write_synthetic_output,
)

VIEWS = ("runs", "recording_history", "recordings", "segments", "labels", "embeddings")
# Parameters that make every query file run (the required ones given).
QUERY_PARAMS = {
    "label_counts": {},
    "top_segments": {"label": "rain"},
    "timeline": {"uri": URI_A},
    "events": {},
    "similar_segments": {"uri": URI_A, "segment_index": 2},
}


def assert_consistent(con: duckdb.DuckDBPyConnection) -> None:
    """Invariants of the views over any OUT, synthetic or written by the pipeline."""
    for view in VIEWS:
        assert "model" in Q.fetch(con, f"FROM {view} LIMIT 0").columns, view
    dupes = Q.fetch(con, "SELECT model, uri FROM recordings GROUP BY ALL HAVING count(*) > 1")
    assert not dupes.rows, dupes
    # Segments only for current labeled recordings, exactly n_segments of them, indexed 0..n-1.
    mismatched = Q.fetch(
        con,
        """
        WITH counted AS (
            SELECT model, uri, count(*) AS n, count(DISTINCT segment_index) AS n_index,
                max(segment_index) AS last
            FROM segments GROUP BY ALL
        )
        SELECT model, uri, r.status, r.n_segments, c.n, c.n_index, c.last
        FROM recordings AS r FULL JOIN counted AS c USING (model, uri)
        WHERE (c.n IS NOT NULL AND r.status IS DISTINCT FROM 'labeled')
            OR (r.status = 'labeled'
                AND (r.n_segments <> coalesce(c.n, 0) OR c.n_index <> c.n OR c.last <> c.n - 1))
        """,
    )
    assert not mismatched.rows, Q.format_table(mismatched)
    # labels: ranks 1..K of every segment, no label lost; one embedding per segment.
    bad_ranks = Q.fetch(
        con,
        """
        SELECT model, uri, segment_index FROM labels GROUP BY ALL
        HAVING list(rank ORDER BY rank) <> range(1, count(*) + 1) OR count(label) <> count(*)
        """,
    )
    assert not bad_ranks.rows, Q.format_table(bad_ranks)
    counts = Q.fetch(
        con,
        """
        SELECT (SELECT count(*) FROM labels), (SELECT coalesce(sum(len(labels)), 0) FROM segments),
            (SELECT count(*) FROM embeddings), (SELECT count(*) FROM segments)
        """,
    ).rows[0]
    assert counts[0] == counts[1] and counts[2] == counts[3], counts


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_output(tmp_path_factory.mktemp("out")).out


@pytest.fixture(scope="module")
def con(out: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = Q.connect(out)
    yield connection
    connection.close()


def run(con: duckdb.DuckDBPyConnection, name: str, **params: object) -> list[dict[str, object]]:
    return Q.fetch_file(con, name, params).records()


def test_views_have_the_documented_columns(con: duckdb.DuckDBPyConnection) -> None:
    columns = {view: Q.fetch(con, f"FROM {view} LIMIT 0").columns for view in VIEWS}
    assert columns["labels"] == (
        "recording_id",
        "uri",
        "segment_index",
        "start_s",
        "end_s",
        "rank",
        "label",
        "confidence",
        "model",
    )
    assert columns["embeddings"] == ("recording_id", "uri", "segment_index", "model", "embedding")
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE segments)").fetchall())
    assert types["embedding"] == "FLOAT[8]"
    assert types["labels"] == "VARCHAR[]"
    assert "last_seen_at" in columns["recordings"]


def test_views_are_consistent(con: duckdb.DuckDBPyConnection) -> None:
    assert_consistent(con)


def test_current_recordings_are_the_latest_labeled_or_failed_rows(con: duckdb.DuckDBPyConnection) -> None:
    rows = Q.fetch(con, "SELECT model, uri, status, run_id, error, n_segments FROM recordings").rows
    current = {(m, u): (s, r, e, n) for m, u, s, r, e, n in rows}
    assert current == {
        (M1, URI_A): ("labeled", RUN1, None, 7),
        (M1, URI_B): ("labeled", RUN1, None, 3),  # skipped in RUN2: still RUN1's row
        (M1, URI_C): ("failed", RUN2, ERROR_C2, 0),
        (M1, URI_D): ("labeled", RUN2, None, 2),  # relabeled after a change
        (M1, URI_E): ("failed", RUN2, ERROR_E, 0),  # labeled, then changed and failed
        (M1, URI_G): ("labeled", RUN3, None, 2),  # committed by a run that was killed later
        (M2, URI_A): ("labeled", RUN4, None, 7),
        (M2, URI_B): ("labeled", RUN4, None, 3),
    }
    sql = "SELECT last_seen_at > finished_at FROM recordings"
    sql += " WHERE model = getvariable('m') AND uri = getvariable('u')"
    assert Q.fetch(con, sql, {"m": M1, "u": URI_B}).rows == ((True,),)  # B was seen again in RUN2


def test_history_keeps_every_row_and_runs_only_finished_runs(con: duckdb.DuckDBPyConnection) -> None:
    history = Q.fetch(con, "SELECT model, uri, run_id, status FROM recording_history").rows
    assert len(history) == 12
    assert (M1, URI_B, RUN2, "skipped") in history
    runs = Q.fetch(con, "SELECT model, run_id, n_skipped FROM runs ORDER BY run_id").rows
    assert runs == ((M1, RUN1, 0), (M1, RUN2, 1), (M2, RUN4, 0))


def test_debris_and_superseded_segments_are_not_visible(con: duckdb.DuckDBPyConnection) -> None:
    raw = Q.fetch(
        con,
        "SELECT count(*) FROM audify_segment_rows WHERE part = getvariable('part')",
        {"part": f"part-{RUN3}-00001.parquet"},
    )
    assert raw.rows == ((9,),)  # the debris is on disk and read, but must not show
    visible = Q.fetch(con, "SELECT model, uri, run_id, count(*) FROM segments GROUP BY ALL ORDER BY ALL").rows
    assert visible == (
        (M1, URI_A, RUN1, 7),
        (M1, URI_B, RUN1, 3),
        (M1, URI_D, RUN2, 2),
        (M1, URI_G, RUN3, 2),  # not 4: G's copy in the uncommitted part is left out
        (M2, URI_A, RUN4, 7),
        (M2, URI_B, RUN4, 3),
    )
    d_labels = Q.fetch(
        con, "SELECT DISTINCT label FROM labels WHERE rank = 1 AND uri = getvariable('uri')", {"uri": URI_D}
    )
    assert d_labels.rows == (("crackling_fire",),)  # RUN2's, not RUN1's 'wind'


def test_label_counts_per_recording_and_model(con: duckdb.DuckDBPyConnection) -> None:
    rows = run(con, "label_counts", uri=URI_A)
    got = [(r["model"], r["label"], r["n_segments"], round(r["share"], 4)) for r in rows]
    assert got == [(M1, "rain", 4, round(4 / 7, 4)), (M1, "dog", 3, round(3 / 7, 4)), (M2, "wind", 7, 1.0)]
    totals: dict[tuple[object, object], float] = {}
    for r in run(con, "label_counts"):
        totals[r["model"], r["uri"]] = totals.get((r["model"], r["uri"]), 0.0) + r["share"]
    assert len(totals) == 6 and all(t == pytest.approx(1.0) for t in totals.values())


def test_queries_with_a_model_filter_show_that_model_only(con: duckdb.DuckDBPyConnection) -> None:
    for name, params in QUERY_PARAMS.items():
        for model in (M1, M2):
            rows = run(con, name, model=model, **params)
            assert rows, (name, model)
            assert {r["model"] for r in rows} == {model}, name
    assert {r["label"] for r in run(con, "label_counts", model=M2)} == {"wind", "rain"}


def test_top_segments_binds_a_label_with_a_quote(con: duckdb.DuckDBPyConnection) -> None:
    rows = run(con, "top_segments", label=QUOTE_LABEL, limit=2, model=M1)
    got = [(r["position"], r["uri"], r["segment_index"], r["rank"], round(r["confidence"], 3)) for r in rows]
    assert got == [(1, URI_B, 0, 1, 0.9), (2, URI_B, 1, 1, 0.7)]
    every_model = run(con, "top_segments", label=QUOTE_LABEL, limit=3)
    positions = [(r["model"], r["position"]) for r in every_model]
    assert positions == [(M1, 1), (M1, 2), (M1, 3), (M2, 1), (M2, 2), (M2, 3)]
    assert all(r["label"] == QUOTE_LABEL for r in every_model)


def test_hostile_parameter_values_are_data(con: duckdb.DuckDBPyConnection) -> None:
    assert run(con, "top_segments", label="x'); DROP VIEW segments; --") == []
    assert run(con, "timeline", uri="' OR 1=1 --") == []
    assert Q.fetch(con, "SELECT count(*) FROM segments").rows == ((24,),)


def test_missing_required_parameter_is_a_clear_error(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(duckdb.InvalidInputException, match="SET VARIABLE label"):
        run(con, "top_segments")
    with pytest.raises(duckdb.InvalidInputException, match="SET VARIABLE uri"):
        run(con, "timeline")


def test_timeline_of_one_recording(con: duckdb.DuckDBPyConnection) -> None:
    rows = run(con, "timeline", uri=URI_A, model=M1)
    assert [r["segment_index"] for r in rows] == list(range(7))
    assert [r["label"] for r in rows] == ["dog", "dog", "rain", "rain", "rain", "rain", "dog"]
    assert rows[2]["top3_labels"] == ["rain", "wind", QUOTE_LABEL]
    assert [r["start_s"] for r in rows[:2]] == [0.0, 1.0] and rows[-1]["end_s"] == 7.0
    assert [r["model"] for r in run(con, "timeline", uri=URI_A)] == [M1] * 7 + [M2] * 7
    assert run(con, "timeline", uri=URI_E) == []  # failed now: its old segments are gone


def test_events_merge_consecutive_segments_with_the_same_top_label(con: duckdb.DuckDBPyConnection) -> None:
    rows = run(con, "events", uri=URI_A, model=M1)
    got = [(r["label"], r["start_s"], r["end_s"], r["n_segments"]) for r in rows]
    assert got == [("dog", 0.0, 2.0, 2), ("rain", 2.0, 6.0, 4), ("dog", 6.0, 7.0, 1)]
    assert rows[1]["mean_confidence"] == pytest.approx((0.7 + 0.6 + 0.95 + 0.5) / 4, abs=1e-6)
    assert rows[1]["max_confidence"] == pytest.approx(0.95, abs=1e-6)
    every = run(con, "events")
    assert [(r["label"], r["n_segments"]) for r in every if r["model"] == M2 and r["uri"] == URI_A] == [
        ("wind", 7)
    ]
    per_model = {m: sum(r["n_segments"] for r in every if r["model"] == m) for m in (M1, M2)}
    assert per_model == {M1: 14, M2: 10}


def test_similar_segments_finds_the_near_duplicate_in_the_same_model(con: duckdb.DuckDBPyConnection) -> None:
    rows = run(con, "similar_segments", uri=URI_A, segment_index=2, limit=3, model=M1)
    assert len(rows) == 3
    assert (rows[0]["uri"], rows[0]["segment_index"]) == (URI_B, 1)
    assert rows[0]["similarity"] > 0.999 > rows[1]["similarity"]
    assert all(r["model"] == M1 for r in rows)
    everything = run(con, "similar_segments", uri=URI_A, segment_index=2, limit=100)
    assert [r["model"] for r in everything] == [M1] * 13 + [M2] * 9  # every other segment of its model
    assert (URI_A, 2) not in {(r["uri"], r["segment_index"]) for r in everything}
    # M2's B segment 2 holds M1's very embedding of the query: it shows for M2 only, ranked by M2's own query.
    both = run(con, "similar_segments", uri=URI_A, segment_index=2, limit=1)
    assert [(r["model"], r["uri"], r["segment_index"]) for r in both] == [(M1, URI_B, 1), (M2, URI_B, 0)]


def test_run_sql_and_run_query_file_open_out_themselves(out: Path) -> None:
    sql = (
        "SELECT model, count(*) AS n FROM segments WHERE uri = getvariable('uri') GROUP BY ALL ORDER BY model"
    )
    result = Q.run_sql(out, sql, {"uri": URI_B})
    assert result.columns == ("model", "n") and result.rows == ((M1, 3), (M2, 3))
    assert len(Q.run_query_file(out, "events", {"uri": URI_D, "model": M1})) == 1
    with pytest.raises(FileNotFoundError, match="label_counts"):
        Q.run_query_file(out, "no_such_query")
    for bad in ("x; DROP VIEW segments", "audify_out"):
        with pytest.raises(ValueError, match="parameter name"):
            Q.run_sql(out, "SELECT 1", {bad: 1})


def test_text_report(out: Path) -> None:
    report = Q.text_report(out)
    for title in (
        "Runs",
        "Recordings (current state)",
        "Failures (current)",
        "Top label per recording",
        "Events",
    ):
        assert f"== {title}" in report
    runs_section = report.split("== Runs ==")[1].split("==")[0]
    assert RUN1 in runs_section and RUN4 in runs_section and RUN3 not in runs_section
    failures = report.split("== Failures (current) ==")[1].split("==")[0]
    assert ERROR_E in failures and ERROR_C2 in failures and URI_E in failures and URI_A not in failures
    assert QUOTE_LABEL in report


def test_out_with_every_recording_failed(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    out = write_failed_only_output(tmp_path).out
    empty = Q.connect(out, embedding_dim=8)
    try:
        for view in ("audify_segment_rows", "audify_recording_rows", *VIEWS):
            describe = f"SELECT column_name, column_type FROM (DESCRIBE {view})"
            assert empty.execute(describe).fetchall() == con.execute(describe).fetchall(), view
        assert Q.fetch(empty, "SELECT count(*) FROM segments").rows == ((0,),)
        assert Q.fetch(empty, "SELECT status, count(*) FROM recordings GROUP BY ALL").rows == (("failed", 2),)
        for name, params in QUERY_PARAMS.items():
            assert Q.fetch_file(empty, name, params).rows == (), name
        assert_consistent(empty)
    finally:
        empty.close()
    assert ERROR_E in Q.text_report(out)


def test_an_out_without_output_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(duckdb.InvalidInputException, match="no output under"):
        Q.connect(tmp_path / "nothing-here")


def test_models_with_different_embedding_lengths(tmp_path: Path) -> None:
    out = write_synthetic_output(tmp_path, m1_dim=8, m2_dim=4).out
    con = Q.connect(out)  # D from the first embedding found: M1's 8
    try:
        assert len(run(con, "events", model=M2)) == 2  # no embedding read: fine
        assert run(con, "similar_segments", uri=URI_A, segment_index=2, model=M1)[0]["uri"] == URI_B
        with pytest.raises(duckdb.InvalidInputException, match="SET VARIABLE embedding_dim = 4"):
            run(con, "similar_segments", uri=URI_A, segment_index=2, model=M2)
    finally:
        con.close()
    con = Q.connect(out, embedding_dim=4)
    try:
        assert run(con, "similar_segments", uri=URI_A, segment_index=2, model=M2)[0]["uri"] == URI_B
    finally:
        con.close()


def test_format_table() -> None:
    result = Q.QueryResult(("name", "n", "x"), tuple((f"row{i}", i, i / 3) for i in range(5)))
    lines = Q.format_table(result, max_rows=2).splitlines()
    assert lines[0].split() == ["name", "n", "x"]
    assert lines[2] == "row0  0  0.000" and lines[3] == "row1  1  0.333"
    assert lines[-1] == "… 3 more rows"
    long = Q.QueryResult(("uri",), (("a" * 50 + "b" * 50,),))
    cell = Q.format_table(long, max_width=21).splitlines()[2]
    assert cell == "a" * 10 + "…" + "b" * 10
    assert Q.format_table(Q.QueryResult(("a",), ())).endswith("(no rows)")


def test_normalize_out(tmp_path: Path) -> None:
    assert Q.normalize_out("s3://bucket/prefix/") == "s3://bucket/prefix"
    assert Q.normalize_out(f"file://{tmp_path}/") == tmp_path.resolve().as_posix()
    assert Q.normalize_out(tmp_path / "x" / ".." / "y") == (tmp_path / "y").resolve().as_posix()
