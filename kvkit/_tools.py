"""Key-space helpers shared by the command line and the pytest plugin (sync, no I/O of its own).

Both create keys under a name nobody else uses (a random queue name, a per-test prefix) and
must remove every one of them afterwards, whatever the backend's key layout is: so they
delete by pattern with ``SCAN`` (never ``KEYS``, which blocks the server).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._keys import glob_escape

__all__ = ["glob_escape", "unlink_matching"]

_BATCH = 500


def _batches(redis: Any, pattern: str) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for key in redis.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def unlink_matching(redis: Any, pattern: str, where: str) -> int:
    """Delete every key matching ``pattern`` through the sync redis-py client ``redis``.

    Args:
        redis: A sync redis-py client (``Client.redis(role)``); Cluster scans every node.
        pattern: A ``SCAN MATCH`` pattern (see :func:`glob_escape`).
        where: The redacted URL, for error messages.

    Returns:
        How many keys were deleted.

    Raises:
        BackendError: the server failed (translated from redis-py).
    """
    from ._redis_errors import REDIS_ERRORS, translate

    deleted = 0
    try:
        for batch in _batches(redis, pattern):
            deleted += int(redis.unlink(*batch))
    except REDIS_ERRORS as exc:
        raise translate(exc, where) from exc
    return deleted
