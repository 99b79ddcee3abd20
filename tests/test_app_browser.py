"""The review desk in a real browser: Debian's headless Chromium driven by selenium over the real server.

A reviewer opens a segment of a filtered list, plays it, and presses keys: ``c`` marks the shown
label correct and the page moves on to the next segment; ``o`` names another label; ``w`` on a
page asked about a label of the reviewer's own records it absent. Each verdict must be in the
``annotations`` view; the calibration page's button saves a threshold; no page may log a console error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from audify_batch.app.server import AppSettings, create_app
from audify_batch.cli.serve import bind
from audify_batch.model.thresholds_file import read_thresholds
from audify_batch.review.calibrate import default_thresholds_path
from audify_batch.store.annotations import Annotation, AnnotationWriter, Verdict
from audify_batch.store.query import run_sql
from tests.app_helpers import label_small_archive

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = Path("/usr/bin/chromium")
WAIT_S = 30.0

pytestmark = pytest.mark.skipif(
    not CHROMEDRIVER.exists(), reason="no /usr/bin/chromedriver (setup.sh installs chromium-driver)"
)


@contextmanager
def running_desk(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields the base URL."""
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, "the server to start")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def wait_for(
    condition: Callable[[], Any],
    what: str,
    timeout_s: float = WAIT_S,
    retry_on: tuple[type[Exception], ...] = (),
) -> Any:
    """``condition()`` once it is truthy; ``retry_on``: exceptions that mean "not yet" (an element
    read while the page reloads)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = condition()
        except retry_on:
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def chromium(width: int = 1280, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium through Debian's chromedriver, console messages kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.add_argument("--autoplay-policy=no-user-gesture-required")  # play() from a script
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[tuple[str, Path]]:
    out = label_small_archive(tmp_path_factory.mktemp("browser-desk"), tiny_model_dir)
    app = create_app(AppSettings(out=str(out), model=str(tiny_model_dir), annotator="browser"))
    with running_desk(app) as base:
        yield base, out


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


def severe(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def long_segments(out: Path) -> list[str]:
    rows = run_sql(
        str(out),
        "SELECT recording_id || ':' || segment_index FROM segments "
        "WHERE uri LIKE '%long.wav' ORDER BY segment_index",
    ).rows
    return [r[0] for r in rows]


def verdicts(out: Path, segment: str) -> list[tuple[Any, ...]]:
    sql = (
        "SELECT label, verdict, annotator FROM annotations WHERE segment_id = getvariable('s') ORDER BY label"
    )
    return list(run_sql(str(out), sql, {"s": segment}).rows)


def wait_for_segment(driver: Any, segment: str) -> None:
    wait_for(
        lambda: driver.execute_script("return document.body && document.body.dataset.segmentId") == segment,
        f"the page of segment {segment}",
    )


def test_play_mark_correct_and_move_on(desk: tuple[str, Path], driver: Any) -> None:
    from selenium.webdriver.common.by import By

    base, out = desk
    ids = long_segments(out)
    driver.get(f"{base}/segments/{ids[0]}?walk=list&uri=long.wav&pos=0")
    wait_for_segment(driver, ids[0])
    player = driver.find_element(By.ID, "player")
    driver.execute_script("arguments[0].play().catch(function () {});", player)
    wait_for(
        lambda: driver.execute_script("return arguments[0].readyState", player) >= 1, "the audio to load"
    )
    duration_s = driver.execute_script("return arguments[0].duration", player)
    assert duration_s == pytest.approx(5.0, abs=0.01)
    wait_for(
        lambda: driver.execute_script("return arguments[0].currentTime", player) > 0, "the audio to play"
    )
    shown = driver.find_element(By.ID, "shown-label").text
    rows = wait_for(
        lambda: driver.find_elements(By.CSS_SELECTOR, "#similar[data-loaded=yes] table.similar tbody tr"),
        "the similar segments",
    )
    assert len(rows) == 20
    driver.find_element(By.TAG_NAME, "body").send_keys("c")
    wait_for_segment(driver, ids[1])
    assert "pos=1" in driver.current_url
    assert verdicts(out, ids[0]) == [(shown, "present", "browser")]
    assert severe(driver) == []


def test_other_label_by_keyboard_then_previous(desk: tuple[str, Path], driver: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base, out = desk
    ids = long_segments(out)
    driver.get(f"{base}/segments/{ids[5]}?walk=list&uri=long.wav&pos=5")
    wait_for_segment(driver, ids[5])
    shown = driver.find_element(By.ID, "shown-label").text
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys("o")
    assert driver.switch_to.active_element.get_attribute("id") == "other-select"
    driver.find_element(By.ID, "other-text").send_keys("bird song", Keys.ENTER)
    wait_for_segment(driver, ids[6])
    assert verdicts(out, ids[5]) == sorted(
        [(shown, "absent", "browser"), ("bird song", "present", "browser")]
    )
    driver.find_element(By.TAG_NAME, "body").send_keys("p")
    wait_for_segment(driver, ids[5])
    table = driver.find_element(By.CSS_SELECTOR, "table.verdicts").text
    assert "bird song present browser" in table and f"{shown} absent browser" in table
    assert severe(driver) == []


def test_main_pages_load_without_console_errors(desk: tuple[str, Path], driver: Any) -> None:
    from selenium.webdriver.common.by import By

    base, _ = desk
    pages = (
        "/",
        "/segments?uri=noise",
        "/queues",
        "/queues/uncertain",
        "/queues/near-tie",
        "/report",
        "/calibrate",
    )
    for path in pages:
        driver.get(base + path)
        wait_for(lambda: driver.execute_script("return document.readyState") == "complete", f"{path} to load")
        assert driver.find_elements(By.TAG_NAME, "h1"), path
        assert severe(driver) == [], path
    driver.get(base + "/queues/uncertain")
    driver.find_element(By.LINK_TEXT, "start reviewing (first segment)").click()
    wait_for(
        lambda: driver.execute_script("return document.body.dataset.page") == "segment", "a segment page"
    )
    images = driver.find_elements(By.CSS_SELECTOR, ".figures img")
    assert len(images) >= 4
    for image in images[:2]:
        driver.execute_script("arguments[0].scrollIntoView()", image)
        wait_for(
            lambda im=image: driver.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth", im
            ),
            "a figure",
        )
    assert severe(driver) == []


def test_w_on_a_label_of_ones_own(desk: tuple[str, Path], driver: Any) -> None:
    from selenium.webdriver.common.by import By

    base, out = desk
    segment = long_segments(out)[20]
    driver.get(f"{base}/segments/{segment}?label=tawny%20owl")
    wait_for_segment(driver, segment)
    assert driver.find_element(By.ID, "shown-label").text == "tawny owl"
    driver.find_element(By.TAG_NAME, "body").send_keys("w")
    wait_for(lambda: verdicts(out, segment) == [("tawny owl", "absent", "browser")], "the verdict")
    assert severe(driver) == []


def test_the_calibration_page_saves_its_threshold(desk: tuple[str, Path], driver: Any) -> None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    base, out = desk
    rows = run_sql(
        str(out),
        "SELECT recording_id || ':' || segment_index, uri, start_s, end_s, model FROM segments "
        "WHERE uri LIKE '%long.wav' AND segment_index BETWEEN 30 AND 41",
    ).rows
    AnnotationWriter(str(out)).append(
        [
            Annotation(m, sid, uri, start_s, end_s, "rain", Verdict.PRESENT)
            for sid, uri, start_s, end_s, m in rows
        ]
    )
    driver.get(f"{base}/calibrate?label=rain")
    button = wait_for(lambda: driver.find_elements(By.ID, "save-threshold"), "the save button")[0]
    button.click()
    path = default_thresholds_path(out, rows[0][4])
    wait_for(lambda: Path(path).exists(), "the thresholds file")
    ((n_reviewed,),) = run_sql(str(out), "SELECT count(*) FROM annotations WHERE label = 'rain'").rows
    assert read_thresholds(path)["thresholds"]["rain"]["n_reviewed"] == n_reviewed >= 12
    # The page reloads 0.8 s after saving: an element found just before may be gone when read.
    wait_for(
        lambda: "saved: threshold" in driver.find_element(By.ID, "saved").text,
        "the page to show it",
        retry_on=(StaleElementReferenceException, NoSuchElementException),
    )
    assert severe(driver) == []
