"""Storage credentials from a Prefect block, for when the AWS environment of the workers is not enough.

The block is a ``Secret`` holding a JSON object of fsspec storage options,
e.g. ``{"key": "...", "secret": "...", "endpoint_url": "https://s3.example"}``.
Flows take only the block's name as a parameter; the options go into
``LabelConfig.storage_options``, which is never logged, hashed, written to
the runs table or shown in artifacts.
"""

from __future__ import annotations

import json
from typing import Any, cast

from prefect.blocks.system import Secret


def storage_options_from_block(block_name: str | None) -> dict[str, Any] | None:
    """The storage options in Secret block ``block_name`` (None when no block is named)."""
    if not block_name:
        return None
    # async_dispatch types the result as "Secret | coroutine"; callers here are sync, so it is the Secret.
    value = cast("Secret[Any]", Secret.load(block_name)).get()
    options = json.loads(value) if isinstance(value, str) else value
    if not isinstance(options, dict):
        raise ValueError(f"Secret block {block_name!r} must hold a JSON object of storage options")
    return options
