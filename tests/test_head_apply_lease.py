"""One apply of a head at a time, and a new apply always shows: a second apply fails at once
instead of deleting the first one's files, and a clock set back never hides a new apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from audify_batch.review.head_apply import apply_head
from audify_batch.store.lease import OutputBusyError, hold_lease
from tests.test_heads import current_scores, stored_scores, write_story


@pytest.fixture
def story(tmp_path: Path) -> Path:
    return write_story(tmp_path / "out", legacy=False)


def test_a_second_apply_of_a_head_fails_while_the_first_holds_it(story: Path) -> None:
    first = apply_head(story, "probe")
    folder = story / "head_scores" / "head=probe"
    before = sorted(p.name for p in folder.iterdir())
    busy = pytest.raises(OutputBusyError, match="another apply of head probe is running")
    with hold_lease(str(folder), "another-apply"), busy:  # an apply of this head under way elsewhere
        apply_head(story, "probe")
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing of the first's removed
    assert f"commit-{first.apply_id}.json" in before and "_lease.json" not in before
    apply_head(story, "probe")  # once the lease is free, applies run again


def test_an_apply_after_a_clock_set_back_still_shows_and_replaces_the_newer_dated_one(
    story: Path,
) -> None:
    first = apply_head(story, "probe")
    folder = story / "head_scores" / "head=probe"
    future = "29990101T000000000000Z-ffffff"  # committed by a host whose clock ran ahead
    for path in folder.iterdir():
        path.rename(folder / path.name.replace(first.apply_id, future))
    second = apply_head(story, "probe")
    assert second.apply_id > future and second.n_removed == 2  # the future-dated part and marker
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"commit-{second.apply_id}.json", f"part-{second.apply_id}-00000.parquet"]
    )
    assert stored_scores(story) == pytest.approx(current_scores(story), abs=1e-6)
