"""Open a page in a real headless Chromium: screenshot, image check, console messages."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no Chromium found: .ci/run installs Debian's chromium (apt-get install chromium)")


@dataclass(frozen=True)
class PageCheck:
    n_images: int
    images_ok: bool
    console: list[str]


def check_page(page: Path) -> PageCheck:
    """Load ``page``; how many images, whether all loaded, and every console message."""
    done = subprocess.run(
        [chromium(), *FLAGS, "--enable-logging=stderr", "--v=0", "--dump-dom", page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    body = re.search(r"<body([^>]*)>", done.stdout)
    attrs = body.group(1) if body else ""
    n_images = re.search(r'data-images="(\d+)"', attrs)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return PageCheck(int(n_images.group(1)) if n_images else -1, 'data-images-ok="yes"' in attrs, console)


def screenshot(page: Path, png: Path, width: int = 1100, height: int = 3000) -> Path:
    subprocess.run(
        [
            chromium(),
            *FLAGS,
            f"--window-size={width},{height}",
            f"--screenshot={png}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return png
