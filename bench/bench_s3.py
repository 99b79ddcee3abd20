"""Throughput of ``label_archive`` with SOURCE and OUT on S3 (SeaweedFS on 127.0.0.1) vs local disk.

    PYTHONPATH=. .venv/bin/python bench/bench_s3.py

Same archive as bench_pipeline.py (8 FLACs, 44.1 kHz, 33 min). Both runs use the same
settings; the S3 run streams every object through s3fs in 4 MiB read-ahead blocks and writes
its Parquet to the bucket. Needs port 8333 free (SeaweedFS binds fixed ports).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import fsspec

from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from bench.archive import fold4_archive
from bench.services import seaweed_s3

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def timed_run(source: str, out: str) -> tuple[float, float]:
    started = time.perf_counter()
    summary = label_archive(LabelConfig.of(source=source, out=out))
    return summary.audio_s, time.perf_counter() - started


def main() -> None:
    archive = fold4_archive()
    with tempfile.TemporaryDirectory(prefix="audify-s3-bench-") as tmp:
        os.environ.update(CREDENTIALS)
        with seaweed_s3(Path(tmp) / "seaweed", os.environ) as endpoint:
            os.environ["AWS_ENDPOINT_URL"] = endpoint
            fs = fsspec.filesystem("s3")
            fs.mkdir("bench")
            started = time.perf_counter()
            for path in sorted(archive.glob("*.flac")):
                fs.put_file(str(path), f"bench/archive/{path.name}")
            print(f"uploaded {archive} in {time.perf_counter() - started:.1f} s")
            local_audio_s, local_s = timed_run(str(archive), str(Path(tmp) / "out"))
            s3_audio_s, s3_s = timed_run("s3://bench/archive", "s3://bench/out")
    for name, audio_s, wall_s in [
        ("local disk", local_audio_s, local_s),
        ("S3 (SeaweedFS)", s3_audio_s, s3_s),
    ]:
        print(f"{name}: {audio_s / 60:.1f} min of audio in {wall_s:.2f} s = {audio_s / wall_s:.0f}x realtime")


if __name__ == "__main__":
    main()
