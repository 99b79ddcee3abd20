"""Shards: split an archive's recordings into N disjoint parts for parallel runs.

A recording's shard depends only on its URI (a stable hash), so every run
that uses the same shard count agrees on it, new recordings land in a
shard without moving old ones, and the shards together cover the archive
exactly once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"need 0 <= index < count, got {self.index}/{self.count}")

    @property
    def name(self) -> str:
        return f"{self.index + 1}-of-{self.count}"


def shard_of(uri: str, count: int) -> int:
    """The shard (0 .. count-1) that ``uri`` belongs to."""
    if count < 1:
        raise ValueError("count must be at least 1")
    digest = hashlib.blake2b(uri.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def in_shard(uri: str, index: int, count: int) -> bool:
    return count == 1 or shard_of(uri, count) == index


def all_shards(count: int) -> list[Shard]:
    return [Shard(i, count) for i in range(count)]
