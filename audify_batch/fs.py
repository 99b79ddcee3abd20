"""Filesystem facts every part needs (fsspec: local disk and object storage alike)."""

from __future__ import annotations

import fsspec


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True for the local filesystem (where rename is atomic and paths are plain)."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return "file" in protocols or "local" in protocols
