"""One writer per OUT: a lease object, ``OUT/_lease.json``, held while a run or a fan-out writes.

Every start of a run used to remove the debris of killed runs (temporary files, segments parts
without their recordings part), including the in-flight files of a run that was still writing.
Now a writer first takes the lease on OUT; only the writer that took it from nobody (no lease, or
one whose holders are provably dead) may clean up, and it spares the files of every live holder.

The record (``Lease``): the owner (a run id, or a fan-out's batch id), the host and pid that took
it, acquired_at, heartbeat_at, expires_at, and its holders. A heartbeat thread of every holder
renews it (``LeaseTiming``: every 10 s, expiry 60 s; the environment variables
``AUDIFY_LEASE_HEARTBEAT_S`` and ``AUDIFY_LEASE_EXPIRY_S`` change both, for tests). A lease is dead
when it expired (every holder stalled or died; clocks of the hosts are assumed to agree within
seconds) or when every holder ran on this host and its process is gone (a killed run is taken over
at once, without waiting for the expiry; pid namespaces that share a host name defeat this check
and fall back to the expiry).

A fan-out's shards share their batch's lease: the owner is the batch id, and a run whose
``batch_id`` equals it joins (adds itself to the holders) instead of failing. The parent flow
takes it first and releases it last; shards run without a parent (tests, by hand) take it under
the batch id when it is free, and the last holder to leave removes it.

A second writer on a leased OUT fails at once with ``OutputBusyError`` (a ``ValueError``: the CLI
prints one line and exits 1) naming the owner, host, pid, heartbeat age and expiry; ``wait_s``
waits for the lease up to that long first. Failing is the default because a second run on the
same OUT is almost always a mistake (a cron job overlapping itself, a fan-out started twice):
waiting silently would hide it, and a scheduler can retry.

Atomicity (``store/lease_store.py``): local disk changes the lease under ``flock`` with
``O_CREAT | O_EXCL`` and atomic renames; S3 with conditional PutObject/DeleteObject (``IfNoneMatch``,
``IfMatch``; moto and AWS S3 honour both), each change checked against the lease read just before
and read back after. A store that rejects conditional requests gets plain writes, one that ignores
them silently is caught by those reads; on either, two writers that both write before either
reads back can both believe they hold it (a residual race of one round trip).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fsspec.core import url_to_fs

from audify_batch.store.lease_store import Found, LeaseStore, lease_store

log = logging.getLogger(__name__)

LEASE_HEARTBEAT_S = 10.0
LEASE_EXPIRY_S = 60.0
LEASE_POLL_S = 1.0  # how often a waiting run looks at the lease again
HEARTBEAT_ENV = "AUDIFY_LEASE_HEARTBEAT_S"
EXPIRY_ENV = "AUDIFY_LEASE_EXPIRY_S"
HOST = socket.gethostname()
_CONFLICT_RETRIES = 20  # reads and writes of one change raced by another holder's change


class OutputBusyError(ValueError):
    """Another live run (or fan-out) holds the lease on OUT."""


class LeaseLostError(RuntimeError):
    """This run's lease on OUT expired or was taken over: it must not commit more."""


@dataclass(frozen=True)
class LeaseTiming:
    heartbeat_s: float = LEASE_HEARTBEAT_S
    expiry_s: float = LEASE_EXPIRY_S
    poll_s: float = LEASE_POLL_S

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_s < self.expiry_s or self.poll_s <= 0:
            raise ValueError("lease timing: need 0 < heartbeat_s < expiry_s and poll_s > 0")

    @classmethod
    def from_env(cls) -> LeaseTiming:
        heartbeat_s = float(os.environ.get(HEARTBEAT_ENV, LEASE_HEARTBEAT_S))
        expiry_s = float(os.environ.get(EXPIRY_ENV, LEASE_EXPIRY_S))
        return cls(min(heartbeat_s, expiry_s / 3), expiry_s, min(LEASE_POLL_S, expiry_s / 3))


@dataclass(frozen=True)
class Holder:
    """A process writing under the lease: a run id (or the fan-out parent's batch id), host, pid."""

    id: str
    host: str
    pid: int

    def dead_here(self) -> bool:
        """Provably dead: it ran on this host and its process is gone."""
        return self.host == HOST and not _pid_alive(self.pid)


@dataclass(frozen=True)
class Lease:
    owner: str  # a run id, or the batch id that a fan-out's shards share
    host: str  # where the owner took it
    pid: int
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    holders: tuple[Holder, ...]
    nonce: str  # new on every write: tells our write from another's when read back

    @classmethod
    def new(cls, owner: str, me: Holder, now: datetime, timing: LeaseTiming) -> Lease:
        expires = now + timedelta(seconds=timing.expiry_s)
        return cls(owner, me.host, me.pid, now, now, expires, (me,), uuid.uuid4().hex)

    def renewed(self, now: datetime, timing: LeaseTiming, holders: tuple[Holder, ...] | None = None) -> Lease:
        expires = now + timedelta(seconds=timing.expiry_s)
        kept = self.holders if holders is None else holders
        return replace(self, heartbeat_at=now, expires_at=expires, holders=kept, nonce=uuid.uuid4().hex)

    def is_dead(self, now: datetime) -> bool:
        return now >= self.expires_at or all(h.dead_here() for h in self.holders)

    def holds(self, owner: str, holder_id: str) -> bool:
        return self.owner == owner and any(h.id == holder_id for h in self.holders)

    def to_json(self) -> str:
        data = asdict(self)
        for key in ("acquired_at", "heartbeat_at", "expires_at"):
            data[key] = data[key].isoformat()
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Lease:
        data = json.loads(text)
        for key in ("acquired_at", "heartbeat_at", "expires_at"):
            data[key] = datetime.fromisoformat(data[key])
        data["holders"] = tuple(Holder(**h) for h in data["holders"])
        return cls(**data)

    def describe(self, out: str, now: datetime) -> str:
        age_s = (now - self.heartbeat_at).total_seconds()
        others = f" and {len(self.holders) - 1} more runs" if len(self.holders) > 1 else ""
        return (
            f"{out} is in use by {self.owner}{others} (host {self.host}, pid {self.pid}): "
            f"last heartbeat {age_s:.0f} s ago, the lease expires at "
            f"{self.expires_at:%Y-%m-%d %H:%M:%S} UTC unless renewed; one writer per OUT: "
            "wait for it to end, or pass --wait-s to wait for the lease"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _now() -> datetime:
    return datetime.now(UTC)


def _write(store: LeaseStore, lease: Lease, token: str | None) -> bool:
    """Create (``token`` None) or change the lease; True when our write is the one that holds."""
    text = lease.to_json()
    if not (store.create(text) if token is None else store.replace(text, token)):
        return False
    if not store.read_back:
        return True
    found = store.read()  # a store that may not honour conditions: did ours land?
    back = _parse(found) if found else None
    return back is not None and _landed(lease, back)


def _landed(ours: Lease, back: Lease) -> bool:
    """``back`` is our write, or a later change built on it (another holder's heartbeat or join)."""
    if back.nonce == ours.nonce:
        return True
    same = (back.owner, back.acquired_at) == (ours.owner, ours.acquired_at)
    return same and {h.id for h in ours.holders} <= {h.id for h in back.holders}


def _parse(found: Found) -> Lease | None:
    try:
        return Lease.from_json(found.text)
    except (ValueError, KeyError, TypeError):
        log.warning("unreadable lease %r: taken over", found.text[:200])
        return None


class HeldLease:
    """This process's place under the lease on OUT, from ``hold_lease``.

    ``fresh``: taken from nobody (no live writer on OUT but this one and those joining it
    since), so clean-up is safe; False when it joined a live lease of its batch.
    """

    def __init__(self, store: LeaseStore, owner: str, me: Holder, timing: LeaseTiming, fresh: bool) -> None:
        self.store, self.owner, self.me, self.timing, self.fresh = store, owner, me, timing, fresh
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._valid_until = time.monotonic() + timing.expiry_s
        self._thread = threading.Thread(target=self._beat, name=f"lease-{me.id}", daemon=True)
        self._still = threading.Lock()  # held by each beat; ``quiesced`` holds it between beats

    def check(self) -> None:
        """Raise ``LeaseLostError`` once the lease is no longer ours (then nothing more is committed)."""
        if self._lost.is_set() or time.monotonic() > self._valid_until:
            raise LeaseLostError(f"lost the lease on OUT ({self.owner}): another run may write there now")

    def live_ids(self) -> frozenset[str]:
        """Ids of every holder of the lease now: their files are never debris."""
        found = self.store.read()
        current = _parse(found) if found else None
        if current is None or not current.holds(self.owner, self.me.id):
            self._lost.set()
            self.check()
        return frozenset(h.id for h in current.holders) if current else frozenset()

    def start(self) -> None:
        self._thread.start()

    @property
    def heartbeat(self) -> threading.Thread:
        return self._thread

    @contextmanager
    def quiesced(self) -> Iterator[None]:
        """Hold the heartbeat still for the block: no beat is under way or starts, so the
        heartbeat thread holds no lock (for a ``fork``: its copy would keep that lock forever).
        Keep the block short: a lease not renewed for ``expiry_s`` is lost."""
        with self._still:
            yield

    def _beat(self) -> None:
        while not self._stop.wait(self.timing.heartbeat_s) and not self._lost.is_set():
            with self._still:
                try:
                    self._change(lambda lease: lease.renewed(_now(), self.timing))
                except Exception:  # a storage hiccup: the next beat tries again
                    log.warning("lease heartbeat failed; retrying", exc_info=True)

    def _change(self, change: Callable[[Lease], Lease | None]) -> bool:
        """Apply ``change`` (Lease -> Lease | None to delete) while we hold it; False if not ours."""
        for _ in range(_CONFLICT_RETRIES):
            found = self.store.read()
            current = _parse(found) if found else None
            if found is None or current is None or not current.holds(self.owner, self.me.id):
                self._lost.set()
                return False
            new = change(current)
            done = self.store.delete(found.token) if new is None else _write(self.store, new, found.token)
            if done:
                if new is not None:
                    self._valid_until = time.monotonic() + self.timing.expiry_s
                return True
        return False

    def release(self) -> None:
        """Stop the heartbeat and leave; the last holder removes the lease."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._lost.is_set():
            return

        def leave(lease: Lease) -> Lease | None:
            rest = tuple(h for h in lease.holders if h.id != self.me.id)
            return lease.renewed(_now(), self.timing, rest) if rest else None

        try:
            self._change(leave)
        except OSError:
            log.warning("could not release the lease on OUT: it expires by itself", exc_info=True)


def _try_acquire(store: LeaseStore, owner: str, me: Holder, timing: LeaseTiming) -> HeldLease | Lease | None:
    """Ours (a ``HeldLease``), busy (the live ``Lease`` of another), or None: raced, try again."""
    found = store.read()
    now = _now()
    current = _parse(found) if found else None
    if found is None or current is None or current.is_dead(now):
        if current is not None:
            log.warning(
                "taking over the dead lease of %s (host %s, pid %d)", current.owner, current.host, current.pid
            )
        token = None if found is None else found.token
        if _write(store, Lease.new(owner, me, now, timing), token):
            return HeldLease(store, owner, me, timing, fresh=True)
        return None
    if current.owner == owner and owner != me.id:  # a run of the batch that holds OUT: join it
        joined = current.renewed(now, timing, (*current.holders, me))
        return (
            HeldLease(store, owner, me, timing, fresh=False) if _write(store, joined, found.token) else None
        )
    return current


def acquire(
    store: LeaseStore, out: str, holder_id: str, batch_id: str | None, wait_s: float, timing: LeaseTiming
) -> HeldLease:
    """Take (or, for a run of the batch that holds it, join) the lease; wait up to ``wait_s``."""
    me = Holder(holder_id, HOST, os.getpid())
    owner = batch_id or holder_id
    deadline = time.monotonic() + wait_s
    for _ in range(_CONFLICT_RETRIES):  # consecutive races with other writers of the lease
        result = _try_acquire(store, owner, me, timing)
        while isinstance(result, Lease):  # busy: wait for it, up to the deadline
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                raise OutputBusyError(result.describe(out, _now()))
            time.sleep(min(timing.poll_s, left_s))
            result = _try_acquire(store, owner, me, timing)
        if isinstance(result, HeldLease):
            return result
        time.sleep(0.01)
    raise OutputBusyError(f"{out}: the lease kept changing under {_CONFLICT_RETRIES} attempts to take it")


@contextmanager
def hold_lease(
    out: str,
    holder_id: str,
    storage_options: dict[str, Any] | None = None,
    *,
    batch_id: str | None = None,
    wait_s: float = 0.0,
    timing: LeaseTiming | None = None,
) -> Iterator[HeldLease]:
    """Hold the lease on ``out`` for the block, renewed by a heartbeat, released on any exit."""
    fs, root = url_to_fs(out, **(storage_options or {}))
    held = acquire(lease_store(fs, root), out, holder_id, batch_id, wait_s, timing or LeaseTiming.from_env())
    held.start()
    try:
        yield held
    finally:
        held.release()


def read_lease(out: str, storage_options: dict[str, Any] | None = None) -> Lease | None:
    """The lease on ``out`` now (live or not), or None."""
    fs, root = url_to_fs(out, **(storage_options or {}))
    found = lease_store(fs, root).read()
    return _parse(found) if found else None
