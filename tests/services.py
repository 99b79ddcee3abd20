"""Real services for integration tests: SeaweedFS (S3), a Prefect server and Prefect workers.

Each is a context manager that starts the process in its own session, waits
until it answers, and on exit stops it and everything it started (also when
the test failed), leaving its log in the given folder. SeaweedFS and the process
helpers live in bench/services.py (the S3 benchmark uses them too).
"""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from bench.services import BIN, background, wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def prefect_server(home: Path, env: Mapping[str, str]) -> Iterator[str]:
    """``prefect server start`` on a free 127.0.0.1 port with its own SQLite; yields the API URL."""
    port = free_port()
    server_env = {
        **env,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    home.mkdir(parents=True, exist_ok=True)
    cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with background(cmd, server_env, home / "server.log") as proc:
        api = f"http://127.0.0.1:{port}/api"
        wait_until(lambda: _http_ok(f"{api}/health"), 120, "Prefect server", proc)
        yield api


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
