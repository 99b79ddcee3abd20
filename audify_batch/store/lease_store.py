"""Where the lease on OUT lives: ``OUT/_lease.json`` on local disk or S3, changed only atomically.

Local disk: every change under ``flock`` of the OUT folder; a new lease is created with
``O_CREAT | O_EXCL``, a change is an atomic rename. S3: a new lease is a PutObject with
``IfNoneMatch='*'``, a change one with ``IfMatch=<etag>``, removal a DeleteObject with ``IfMatch``
(AWS S3, moto and MinIO have them). A store that rejects conditional requests gets plain writes
that the caller verifies by reading back (``read_back``; see ``store/lease.py``).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Protocol

from fsspec import AbstractFileSystem
from fsspec.asyn import sync

from audify_batch.fs import is_local
from audify_batch.store import schema as S

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Found:
    text: str
    token: str  # what a conditional change must match: the text on disk, the ETag on S3


class LeaseStore(Protocol):
    read_back: bool  # True: the store may not honour conditions; the caller verifies each write

    def read(self) -> Found | None: ...
    def create(self, text: str) -> bool: ...
    def replace(self, text: str, token: str) -> bool: ...
    def delete(self, token: str) -> bool: ...


class LocalLeaseStore:
    """``OUT/_lease.json`` on local disk; every change under ``flock`` of the OUT folder."""

    read_back = False

    def __init__(self, root: str) -> None:
        self.root = root
        self.path = os.path.join(root, S.LEASE_FILE)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(self.root, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            with suppress(OSError):  # a filesystem without flock: O_EXCL and rename still hold
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _read(self) -> Found | None:
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            return None
        return Found(text, text)

    def read(self) -> Found | None:
        with self._locked():
            return self._read()

    def create(self, text: str) -> bool:
        with self._locked():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            return True

    def replace(self, text: str, token: str) -> bool:
        with self._locked():
            found = self._read()
            if found is None or found.token != token:
                return False
            tmp = f"{self.path}.{uuid.uuid4().hex[:8]}.tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, self.path)
            return True

    def delete(self, token: str) -> bool:
        with self._locked():
            found = self._read()
            if found is None or found.token != token:
                return False
            os.unlink(self.path)
            return True


_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409", "404"}
_UNSUPPORTED_CODES = {"NotImplemented", "501", "InvalidArgument", "InvalidRequest"}


def _s3_code(error: BaseException) -> str:
    cause: BaseException | None = error
    while cause is not None:
        response = getattr(cause, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code", ""))
        cause = cause.__cause__
    return ""


class S3LeaseStore:
    """``OUT/_lease.json`` on S3 through the s3fs client: conditional PutObject/DeleteObject.

    Each change also checks the current lease first, and the caller reads each write back: a
    store that ignores the conditions silently (rather than rejecting them) is then caught too,
    but for the residual race of one round trip.
    """

    read_back = True

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        bucket, _, prefix = root.strip("/").partition("/")
        self.bucket, self.key = bucket, posixpath.join(prefix, S.LEASE_FILE) if prefix else S.LEASE_FILE
        self.conditional = True

    def read(self) -> Found | None:
        async def get() -> tuple[bytes, str]:
            response = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self.key)
            async with response["Body"] as body:
                return await body.read(), response["ETag"]

        try:
            data, etag = sync(self.fs.loop, get)
        except FileNotFoundError:
            return None
        return Found(data.decode("utf-8"), etag)

    def _put(self, text: str, **condition: str) -> bool:
        if not self.conditional:
            condition = {}
        try:
            self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key, Body=text.encode(), **condition)
        except OSError as error:
            code = _s3_code(error)
            if isinstance(error, FileExistsError | FileNotFoundError) or code in _CONFLICT_CODES:
                return False
            if code in _UNSUPPORTED_CODES or error.errno == errno.ENOSYS:
                log.warning(
                    "%s rejects conditional writes; verifying the lease by reading it back", self.bucket
                )
                self.conditional = False
                return self._put(text)
            raise
        return True

    def _is(self, token: str | None) -> bool:
        found = self.read()
        return found is None if token is None else found is not None and found.token == token

    def create(self, text: str) -> bool:
        return self._is(None) and self._put(text, IfNoneMatch="*")

    def replace(self, text: str, token: str) -> bool:
        return self._is(token) and self._put(text, IfMatch=token)

    def delete(self, token: str) -> bool:
        if not self._is(token):
            return False
        condition = {"IfMatch": token} if self.conditional else {}
        try:
            self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.key, **condition)
        except OSError as error:
            if isinstance(error, FileNotFoundError) or _s3_code(error) in _CONFLICT_CODES:
                return False
            raise
        return True


def lease_store(fs: AbstractFileSystem, root: str) -> LeaseStore:
    if is_local(fs):
        return LocalLeaseStore(root)
    if "s3" in ((fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol):
        return S3LeaseStore(fs, root)
    raise ValueError(f"no lease for OUT on {fs.protocol}: use a local folder or s3://")
