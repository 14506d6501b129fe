"""Key-space helpers shared by the command line and the pytest plugin (sync, no I/O of its own).

Both create keys under a name nobody else uses (a random queue name, a per-test prefix) and
must remove every one of them afterwards, whatever the backend's key layout is: so they
delete by pattern with ``SCAN`` (never ``KEYS``, which blocks the server).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._keys import glob_escape

__all__ = ["key_batches", "unlink_prefixed"]

_BATCH = 500


def key_batches(redis: Any, prefix: str) -> Iterator[list[Any]]:
    """Yield the keys starting with ``prefix`` in batches of at most 500 (``SCAN``, never ``KEYS``).

    Args:
        redis: A sync redis-py client (``Client.redis(role)``); Cluster scans every node.
        prefix: A literal key prefix (glob characters in it match only themselves).
    """
    batch: list[Any] = []
    for key in redis.scan_iter(match=glob_escape(prefix) + "*", count=1000):
        batch.append(key)
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def unlink_prefixed(redis: Any, prefix: str, where: str) -> int:
    """Delete every key starting with ``prefix`` through the sync redis-py client ``redis``.

    Args:
        redis: A sync redis-py client (``Client.redis(role)``); Cluster scans every node.
        prefix: A literal key prefix.
        where: The redacted URL, for error messages.

    Returns:
        How many keys were deleted.

    Raises:
        BackendError: the server failed (translated from redis-py).
    """
    from ._redis_errors import REDIS_ERRORS, translate

    deleted = 0
    try:
        for batch in key_batches(redis, prefix):
            deleted += int(redis.unlink(*batch))
    except REDIS_ERRORS as exc:
        raise translate(exc, where) from exc
    return deleted
