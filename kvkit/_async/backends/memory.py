# SYNC-TEXT: "calling it from the event loop is fine; the async methods exist to keep one
#   API shape" -> "the methods call it directly"
"""The memory backend: drives the in-process engine in :mod:`kvkit._memory`.

The engine is synchronous and only ever holds a lock for a few dictionary operations, so
calling it from the event loop is fine; the async methods exist to keep one API shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._counters import add_to_stored
from ..._memory import CacheSpace, get_store
from ..._version import __version__
from .base import (
    AsyncBackend,
    AsyncCacheDriver,
    AsyncLimiterDriver,
    AsyncLockDriver,
    AsyncQueueDriver,
    AsyncSessionDriver,
)
from .memory_lock import AsyncMemoryLockDriver
from .memory_queue import AsyncMemoryQueueDriver
from .memory_ratelimit import AsyncMemoryLimiterDriver
from .memory_sessions import AsyncMemorySessionDriver

if TYPE_CHECKING:
    from ..._settings import Settings
    from ..._urls import ParsedURL


class AsyncMemoryCacheDriver(AsyncCacheDriver):
    """Cache primitives on a :class:`~kvkit._memory.CacheSpace`."""

    def __init__(self, space: CacheSpace) -> None:
        self._space = space

    async def get(self, key: str) -> bytes | None:
        return self._space.get(key)

    async def set(self, key: str, value: bytes, ttl_ms: int | None) -> None:
        self._space.set(key, value, ttl_ms)

    async def add(self, key: str, value: bytes, ttl_ms: int | None) -> bool:
        return self._space.add(key, value, ttl_ms)

    async def delete(self, key: str) -> bool:
        return self._space.delete(key)

    async def exists(self, key: str) -> bool:
        return self._space.get(key) is not None

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        return self._space.get_many(keys)

    async def set_many(self, items: list[tuple[str, bytes]], ttl_ms: int | None) -> None:
        self._space.set_many(items, ttl_ms)

    async def delete_many(self, keys: list[str]) -> int:
        return self._space.delete_many(keys)

    async def incr(self, key: str, delta: int, ttl_ms: int | None) -> int:
        result = 0

        def add(old: bytes | None) -> bytes:
            nonlocal result
            result = add_to_stored(old, delta)  # Redis INCRBY rules, IncrRefused otherwise
            return str(result).encode()

        self._space.update(key, add, ttl_ms)
        return result

    async def pttl(self, key: str) -> int | None:
        return self._space.pttl(key)

    async def expire(self, key: str, ttl_ms: int | None) -> bool:
        return self._space.expire(key, ttl_ms)

    async def clear(self, prefix: str) -> int:
        return self._space.clear(prefix)

    async def delete_if_equal(self, key: str, value: bytes) -> bool:
        return self._space.delete_if_equal(key, value)


class AsyncMemoryBackend(AsyncBackend):
    """``memory://`` and ``memory://NAME``: a private or process-wide named store."""

    kind = "memory"

    def __init__(self, url: ParsedURL, settings: Settings) -> None:
        super().__init__(url, settings)
        self.store = get_store(url.name, url.options.get("maxsize"))
        self._cache = AsyncMemoryCacheDriver(self.store.cache)

    async def ping(self) -> None:
        return None

    async def server_version(self) -> str | None:
        return f"kvkit-memory {__version__}"

    def cache_driver(self) -> AsyncCacheDriver:
        return self._cache

    def unbounded_cache_driver(self, space: str) -> AsyncCacheDriver:
        # The cache space may be LRU-bounded (?maxsize=): this one never evicts.
        return AsyncMemoryCacheDriver(self.store.space(space, CacheSpace))

    def session_driver(self) -> AsyncSessionDriver:
        return AsyncMemorySessionDriver(self.store)

    def queue_driver(self) -> AsyncQueueDriver:
        return AsyncMemoryQueueDriver(self.store)

    def limiter_driver(self) -> AsyncLimiterDriver:
        return AsyncMemoryLimiterDriver(self.store)

    def lock_driver(self) -> AsyncLockDriver:
        return AsyncMemoryLockDriver(self.store)

    async def aclose(self) -> None:
        return None
