"""``audify query`` and every views connection are read-only: OUT is the only thing they reach."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import fsspec
import pytest

from audify_batch.cli.main import main
from audify_batch.store import query as Q
from tests.synthetic_output import write_synthetic_output

VIEWS = ("runs", "recording_history", "recordings", "segments", "labels", "embeddings")
VIEW_COUNTS = "SELECT " + ", ".join(f"(SELECT count(*) FROM {view})" for view in VIEWS)


def all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def local_out(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    write_synthetic_output(out)
    return out


def writing_statements(out: str, outside: str) -> list[str]:
    """SQL that would write a file outside OUT, inside OUT, or change what the connection may do."""
    return [
        f"COPY (SELECT 1 AS x) TO '{outside}/x.csv'",
        f"COPY (SELECT 1 AS x) TO '{out}/segments/model=m-1/part-x.parquet' (FORMAT parquet)",
        f"COPY (SELECT * FROM segments) TO '{out}/copy.csv'",
        f"EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{out}/explained.csv'",
        f"EXPORT DATABASE '{out}/export'",
        f"ATTACH '{out}/attached.duckdb' AS extra",
        f"ATTACH '{outside}/attached.duckdb' AS extra",
        "INSTALL httpfs",
        "LOAD httpfs",
        "CREATE TABLE t AS SELECT 1",
        "SELECT 1; COPY (SELECT 1 AS x) TO '" + out + "/second.csv'",  # hidden after a query
    ]


def test_writes_inside_and_outside_out_are_refused_and_write_nothing(local_out: Path, tmp_path: Path) -> None:
    out = Q.normalize_out(local_out)
    before = all_files(tmp_path)
    expected = Q.run_sql(local_out, VIEW_COUNTS).rows
    for sql in writing_statements(out, str(tmp_path)):
        with pytest.raises(ValueError, match=r"read-only SQL: .* statements are refused"):
            Q.run_sql(local_out, sql)
    assert all_files(tmp_path) == before
    assert Q.run_sql(local_out, VIEW_COUNTS).rows == expected  # every view still reads


@pytest.mark.parametrize(
    "reader",
    [
        "SELECT * FROM read_csv('{path}')",
        "SELECT * FROM read_text('{path}')",
        "SELECT * FROM glob('{folder}/*')",
        "SELECT * FROM read_csv('{out}/../secret.csv')",  # out of OUT through '..'
    ],
)
def test_reading_files_outside_out_is_refused(local_out: Path, tmp_path: Path, reader: str) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("user,password\nroot,hunter2\n")
    sql = reader.format(path=secret, folder=tmp_path, out=Q.normalize_out(local_out))
    with pytest.raises(duckdb.PermissionException, match=f"audify reads only under {local_out}"):
        Q.run_sql(local_out, sql)


def test_a_sibling_folder_sharing_the_prefix_of_out_is_outside(local_out: Path, tmp_path: Path) -> None:
    sibling = tmp_path / "out2"
    sibling.mkdir()
    (sibling / "x.csv").write_text("a\n1\n")
    with pytest.raises(duckdb.PermissionException):
        Q.run_sql(local_out, f"SELECT * FROM read_csv('{sibling}/x.csv')")


def test_settings_are_locked_and_variables_still_work(local_out: Path) -> None:
    for sql in ["SET threads = 1", "SET enable_external_access = true", "RESET lock_configuration"]:
        with pytest.raises(duckdb.Error, match="the configuration has been locked"):
            Q.run_sql(local_out, sql)
    rows = Q.run_sql(local_out, "SET VARIABLE wanted = 'rain'; SELECT getvariable('wanted')").rows
    assert rows == (("rain",),)
    # Reading files under OUT directly is a read, and allowed.
    runs = Q.run_sql(local_out, f"SELECT count(*) FROM read_parquet('{local_out}/runs/*/*.parquet')")
    assert runs.rows[0][0] > 0


def test_internal_connections_are_locked_too(local_out: Path) -> None:
    con = Q.connect(local_out)
    try:
        assert Q.fetch(con, "SELECT count(*) FROM segments").rows[0][0] > 0
        with pytest.raises(duckdb.PermissionException):
            con.execute("SELECT * FROM read_text('/etc/hostname')")
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET enable_external_access = true")
    finally:
        con.close()


def test_cli_query_refuses_a_copy_with_one_line(
    local_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = local_out / "segments" / "model=x-1" / "part-x.parquet"
    status = main(["query", str(local_out), f"COPY (SELECT 1 AS x) TO '{target}' (FORMAT parquet)"])
    captured = capsys.readouterr()
    assert status == 1 and captured.out == ""
    assert captured.err.startswith("audify: error: read-only SQL: COPY statements are refused")
    assert len(captured.err.splitlines()) == 1
    assert not target.exists()
    assert main(["query", str(local_out), "SELECT count(*) AS n FROM segments"]) == 0
    assert "n" in capsys.readouterr().out


@pytest.fixture(scope="module")
def s3_out(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The synthetic OUT in moto's S3 at s3://<bucket>/out, and a CSV beside it (outside OUT)."""
    from tests.s3_server import moto_s3

    local = tmp_path_factory.mktemp("s3src") / "out"
    write_synthetic_output(local)
    with moto_s3():
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        fs.mkdir("readonly")
        fs.put(str(local), "readonly/out", recursive=True)
        fs.pipe_file("readonly/other/secret.csv", b"user,password\nroot,hunter2\n")
        fs.pipe_file("readonly/out2/secret.csv", b"user,password\nroot,hunter2\n")
        yield "s3://readonly/out", "s3://readonly"


def test_s3_views_work_and_reads_outside_out_are_refused(s3_out: tuple[str, str]) -> None:
    out, bucket = s3_out
    counts = Q.run_sql(out, VIEW_COUNTS).rows[0]
    assert all(n > 0 for n in counts)
    for path in [f"{bucket}/other/secret.csv", f"{bucket}/out2/secret.csv", "/etc/passwd"]:
        with pytest.raises(duckdb.PermissionException, match="audify reads only under s3://readonly/out"):
            Q.run_sql(out, f"SELECT * FROM read_csv('{path}')")


def test_s3_writes_are_refused_and_write_nothing(s3_out: tuple[str, str], tmp_path: Path) -> None:
    out, bucket = s3_out
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    before = set(fs.find(bucket))
    for sql in writing_statements(out, f"{bucket}/other"):
        with pytest.raises(ValueError, match="read-only SQL"):
            Q.run_sql(out, sql)
    fs.invalidate_cache()
    assert set(fs.find(bucket)) == before
    assert Q.run_sql(out, "SELECT count(*) FROM segments").rows[0][0] > 0
