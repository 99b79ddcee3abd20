"""Screenshots of the review desk for the README (not a test).

Builds four one-minute "recordings" from ESC-50 clips (../shared/data, see the README), labels
them with the default model, has a reviewer check every segment for "dog" and for "animal" (a
class of one's own; the clips say which is there), trains and applies a custom head for
"animal", serves the desk over that output and takes screenshots of its main pages, the
calibration of "dog" among them, with headless Chromium into ``docs/app-*.png``::

    .venv/bin/python -m tests.app_screenshots
"""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from audify_batch.app.server import AppSettings, create_app
from audify_batch.review.head_apply import apply_head
from audify_batch.review.heads import save_head, train_head
from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from audify_batch.store.annotations import Annotation, AnnotationWriter, Verdict
from audify_batch.store.query import run_sql
from tests.test_app_browser import chromium, running_desk, wait_for
from training.data import SHARED_DATA

DOCS = Path(__file__).resolve().parents[1] / "docs"
SCENES = {
    "garden.flac": [
        "chirping_birds",
        "rooster",
        "hen",
        "dog",
        "rain",
        "wind",
        "insects",
        "crow",
        "frog",
        "chirping_birds",
        "thunderstorm",
        "rain",
    ],
    "street.flac": [
        "car_horn",
        "siren",
        "engine",
        "footsteps",
        "train",
        "helicopter",
        "airplane",
        "church_bells",
        "siren",
        "car_horn",
        "dog",
        "engine",
    ],
    "house.flac": [
        "door_wood_knock",
        "clock_tick",
        "vacuum_cleaner",
        "keyboard_typing",
        "washing_machine",
        "toilet_flush",
        "crying_baby",
        "laughing",
        "coughing",
        "snoring",
        "pouring_water",
        "clock_alarm",
    ],
    "kennel.flac": ["dog", "dog", "cat", "dog", "dog", "rooster", "dog", "dog", "cow", "dog", "dog", "dog"],
}
CALIBRATED = "dog"
# A class of one's own (the ESC-50 labels lack it): ESC-50's animal classes, for a custom head.
ANIMALS = frozenset({"dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow"})


def build_archive(root: Path) -> Path:
    """One FLAC per scene: the first clips of its ESC-50 classes, one after another."""
    esc50 = SHARED_DATA / "esc50"
    if not (esc50 / "meta" / "esc50.csv").is_file():
        raise SystemExit(f"ESC-50 not found at {esc50.resolve()} (see the README: ../shared/data)")
    with open(esc50 / "meta" / "esc50.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    archive = root / "archive"
    archive.mkdir()
    for name, categories in SCENES.items():
        used: dict[str, int] = {}
        clips = []
        for category in categories:
            files = sorted(r["filename"] for r in rows if r["category"] == category)
            clip, rate_hz = sf.read(esc50 / "audio" / files[used.get(category, 0)], dtype="float32")
            used[category] = used.get(category, 0) + 1
            clips.append(clip if clip.ndim == 1 else clip.mean(axis=1))
        sf.write(archive / name, np.concatenate(clips), rate_hz)
    return archive


def add_verdicts(out: Path, model: str, segment: str) -> None:
    """Two verdicts, so that the overview and a segment page show some."""
    uri, start_s, end_s = run_sql(
        str(out),
        "SELECT uri, start_s, end_s FROM segments "
        "WHERE recording_id || ':' || segment_index = getvariable('s')",
        {"s": segment},
    ).rows[0]
    common: dict[str, Any] = {
        "model": model,
        "segment_id": segment,
        "uri": uri,
        "start_s": start_s,
        "end_s": end_s,
    }
    AnnotationWriter(str(out)).append(
        [Annotation(label="rooster", verdict=Verdict.PRESENT, annotator="ana", **common)]
    )


def review_every_segment(out: Path, model: str, label: str, classes: frozenset[str]) -> None:
    """A verdict on ``label`` for every segment: present where its clip is of one of ``classes``
    (each 5-second segment is one clip)."""
    rows = run_sql(str(out), "SELECT recording_id, uri, segment_index, start_s, end_s FROM segments").rows
    verdicts = []
    for rid, uri, index, start_s, end_s in rows:
        scene = SCENES[uri.rsplit("/", 1)[-1]]
        verdict = Verdict.PRESENT if index < len(scene) and scene[index] in classes else Verdict.ABSENT
        verdicts.append(Annotation(model, f"{rid}:{index}", uri, start_s, end_s, label, verdict, "ana"))
    AnnotationWriter(str(out)).append(verdicts)


def shoot(driver: Any, url: str, png: Path, height: int, settle: str | None = None) -> None:
    driver.set_window_size(1280, height)
    driver.get(url)
    wait_for(lambda: driver.execute_script("return document.readyState") == "complete", url)
    if settle:
        wait_for(lambda: driver.execute_script(settle), f"{url}: {settle}", timeout_s=120)
    driver.save_screenshot(str(png))
    print(f"wrote {png}")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="audify-screens-") as tmp:
        root = Path(tmp)
        out = root / "out"
        label_archive(LabelConfig.of(source=str(build_archive(root)), out=str(out), workers=0))
        model = run_sql(str(out), "SELECT model FROM runs").rows[0][0]
        garden = run_sql(str(out), "SELECT recording_id FROM recordings WHERE uri LIKE '%garden.flac'").rows[
            0
        ][0]
        add_verdicts(out, model, f"{garden}:1")
        review_every_segment(out, model, CALIBRATED, frozenset({CALIBRATED}))
        review_every_segment(out, model, "animal", ANIMALS)
        save_head(out, train_head(out, "animal"))
        apply_head(out, "animal")
        app = create_app(AppSettings(out=str(out), model="default", annotator="ana"))
        ready = (  # the audio, the first figures (Grad-CAM the 4th) and the similar segments
            "return document.getElementById('player').readyState >= 1 && Array.prototype.slice.call("
            "document.images, 0, 4).every(function (im) { return im.complete && im.naturalWidth > 0; }) "
            "&& document.querySelector('#similar[data-loaded=yes]') !== null"
        )
        with running_desk(app) as base, chromium() as driver:
            shoot(driver, f"{base}/", DOCS / "app-overview.png", 1100)
            shoot(driver, f"{base}/segments?uri=garden", DOCS / "app-segments.png", 1000)
            shoot(
                driver,
                f"{base}/segments/{garden}:1?walk=list&uri=garden&pos=1",
                DOCS / "app-segment.png",
                2300,
                ready,
            )
            shoot(driver, f"{base}/queues/near-tie", DOCS / "app-queue.png", 1000)
            shoot(driver, f"{base}/calibrate?label={CALIBRATED}", DOCS / "app-calibrate.png", 1250)
    return 0


if __name__ == "__main__":
    sys.exit(main())
