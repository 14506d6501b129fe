"""The one server check every tool shares: PING a backend and read its version.

Kept apart from :mod:`health` (which builds on the client) so that the client can use it
too without the two modules importing each other.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .._health_base import ms_since

if TYPE_CHECKING:
    from .backends.base import AsyncBackend

__all__ = ["ping_check"]


async def ping_check(backend: AsyncBackend) -> dict[str, Any]:
    """PING ``backend``: the one server check of ``/health/redis``, ``health()``, ``kvkit check``.

    Returns:
        ``latency_ms`` (the PING's round trip) and ``server_version`` (``None`` if unknown).

    Raises:
        KVKitError: the backend failed.
    """
    start = time.perf_counter()
    await backend.ping()
    latency = ms_since(start)
    return {"latency_ms": latency, "server_version": await backend.server_version()}
