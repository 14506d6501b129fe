"""What the Redis drivers need from a Redis backend: one round trip under its policy.

:class:`~kvkit._async.backends.redis.AsyncRedisBackend` (and its Cluster, Sentinel and
fakeredis variants) builds the session and queue drivers, so the drivers cannot import
that module without an import cycle. They type their backend against this protocol
instead: the backend module depends on the drivers, the drivers on this module only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..._lua import LuaScript

__all__ = ["AsyncRedisRunner"]


class AsyncRedisRunner(Protocol):
    """The retry/translation policy of a Redis backend around one operation."""

    @property
    def socket_timeout(self) -> float:
        """Seconds a reply may take before the call fails (bounds a blocking read)."""
        ...

    async def run(self, op: Callable[[Any], Awaitable[Any]], *, idempotent: bool) -> Any:
        """Run ``op(client)``, translating errors and retrying idempotent operations."""
        ...

    async def command(self, *args: Any, idempotent: bool) -> Any:
        """Run one raw command (no response parsing) under :meth:`run`'s policy."""
        ...

    async def eval(
        self, script: LuaScript, keys: list[str], args: list[Any], *, idempotent: bool
    ) -> Any:
        """Run ``script`` with EVALSHA (raw reply), loading it first if needed."""
        ...
