"""Transient storage errors: which errors are worth another try, and how long to wait.

Object stores fail now and then (connection reset, 500/503, throttling, a
response cut short). s3fs and botocore retry single requests; this layer
retries a whole recording read from the start with exponential backoff, so
that a fault in the middle of a stream is absorbed too. A recording that
keeps failing becomes a failed row like any bad file.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any, BinaryIO

# Errors that say the file itself is wrong, not the connection: never retried.
PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
TRANSIENT_NAMES = frozenset(
    {
        # aiohttp / asyncio, as raised through s3fs
        "ClientPayloadError",
        "ClientConnectionError",
        "ClientOSError",
        "ServerDisconnectedError",
        "ServerTimeoutError",
        "ClientResponseError",
        # botocore
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "ResponseStreamingError",
        "IncompleteReadError",
        # urllib3 / http.client
        "ProtocolError",
        "IncompleteRead",
        "RemoteDisconnected",
    }
)


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per recording and the backoff between them (full jitter)."""

    attempts: int = 4
    first_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.first_delay_s < 0 or self.max_delay_s < self.first_delay_s:
            raise ValueError("need 0 <= first_delay_s <= max_delay_s")

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Wait before attempt ``attempt + 1`` (attempt counts from 1)."""
        ceiling = min(self.max_delay_s, self.first_delay_s * 2 ** (attempt - 1))
        return (rng or random).uniform(ceiling / 2, ceiling)


def is_transient(error: BaseException) -> bool:
    """True for connection, server-side and truncation errors; False for missing or forbidden files."""
    if isinstance(error, PERMANENT_OS_ERRORS):
        return False
    if isinstance(error, ConnectionError | TimeoutError | asyncio.TimeoutError):
        return True
    for err in _chain(error):
        if type(err).__name__ in TRANSIENT_NAMES or _server_side_status(err):
            return True
    # s3fs maps unknown client errors to a plain OSError; on a network filesystem EIO is transient too.
    return type(error) is OSError


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _server_side_status(error: BaseException) -> bool:
    response: Any = getattr(error, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = response.get("Error", {}).get("Code", "")
        return (isinstance(status, int) and status >= 500) or code in ("SlowDown", "Throttling")
    status = getattr(error, "status", None)
    return isinstance(status, int) and (status >= 500 or status == 429)


class ReadErrorTrap:
    """A file object for soundfile that keeps read errors instead of losing them.

    soundfile's virtual I/O turns an exception inside ``read`` into a short
    read, so libsndfile reports a truncated or corrupt file. The trap returns
    no bytes (end of file) and remembers the error, which the caller re-raises
    so that a connection fault is retried rather than reported as bad audio.
    """

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        if self.error is not None:
            return b""
        try:
            return self.handle.read(size)
        except Exception as error:
            self.error = error
            return b""

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.handle.seek(offset, whence)

    def tell(self) -> int:
        return self.handle.tell()

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error
