"""What every backend offers the services: health primitives and per-service drivers.

A driver stores bytes under full keys; it never serializes values and never applies
policy. Services (cache, sessions, queues) never build backend commands themselves.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..._settings import Settings
    from ..._urls import ParsedURL


class AsyncCacheDriver(abc.ABC):
    """Storage primitives of the cache. Keys are full keys; TTLs are ms (None: none)."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None:
        """Return the value or ``None``."""

    @abc.abstractmethod
    async def set(self, key: str, value: bytes, ttl_ms: int | None) -> None:
        """Store a value."""

    @abc.abstractmethod
    async def add(self, key: str, value: bytes, ttl_ms: int | None) -> bool:
        """Store only if absent; return whether stored."""

    @abc.abstractmethod
    async def delete(self, key: str) -> bool:
        """Delete; return whether the key existed."""

    @abc.abstractmethod
    async def exists(self, key: str) -> bool:
        """Return whether the key exists."""

    @abc.abstractmethod
    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """Return values in order, ``None`` where missing."""

    @abc.abstractmethod
    async def set_many(self, items: list[tuple[str, bytes]], ttl_ms: int | None) -> None:
        """Store every pair with the same TTL."""

    @abc.abstractmethod
    async def delete_many(self, keys: list[str]) -> int:
        """Delete keys; return how many existed."""

    @abc.abstractmethod
    async def incr(self, key: str, delta: int, ttl_ms: int | None) -> int:
        """Atomically add ``delta`` (Redis ``INCRBY``); a created key gets ``ttl_ms``.

        Returns the exact new value over the whole signed 64-bit range.

        Raises:
            IncrRefused: the stored value is not a signed 64-bit integer, or the result
                would leave that range (see :mod:`kvkit._counters`).
        """

    @abc.abstractmethod
    async def pttl(self, key: str) -> int | None:
        """Remaining ms, ``-1`` without expiry, ``None`` when missing."""

    @abc.abstractmethod
    async def expire(self, key: str, ttl_ms: int | None) -> bool:
        """Set a new TTL (``None``: persist); return whether the key exists."""

    @abc.abstractmethod
    async def clear(self, prefix: str) -> int:
        """Delete every key starting with ``prefix``; return how many."""

    @abc.abstractmethod
    async def delete_if_equal(self, key: str, value: bytes) -> bool:
        """Delete ``key`` only while it holds ``value`` (owner-checked lock release)."""


class AsyncBackend(abc.ABC):
    """One connection (pool) to one server+db, or one in-process store.

    Roles whose URLs point at the same server and db share one backend instance.

    Args:
        url: The parsed URL.
        settings: The client's settings (timeouts, pool size, retries).
    """

    kind: str = "abstract"

    def __init__(self, url: ParsedURL, settings: Settings) -> None:
        self.url = url
        self.settings = settings

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url.redacted}>"

    @abc.abstractmethod
    async def ping(self) -> None:
        """Round trip to the server; raise a :class:`kvkit.BackendError` on failure."""

    @abc.abstractmethod
    async def server_version(self) -> str | None:
        """Return the server's version string, if it has one."""

    @abc.abstractmethod
    def cache_driver(self) -> AsyncCacheDriver:
        """Return the cache driver on this backend."""

    def unbounded_cache_driver(self, space: str) -> AsyncCacheDriver:
        """Return a cache driver whose entries are never evicted to make room.

        For data that must not be lost while its TTL runs (the legacy session namespace):
        a backend with a size-bounded cache (``memory://?maxsize=``) gives ``space`` an
        unbounded store of its own. Backends that never evict return :meth:`cache_driver`.

        Args:
            space: Names the separate store, on backends that need one.
        """
        return self.cache_driver()

    @abc.abstractmethod
    def session_driver(self) -> Any:
        """Return the sessions driver on this backend (see ``*_sessions.py``)."""

    @abc.abstractmethod
    def queue_driver(self) -> Any:
        """Return the queues driver on this backend (see ``*_queue.py``)."""

    def redis(self) -> Any:
        """Return the underlying redis-py client (Redis backends only).

        Raises:
            ConfigError: the backend is not Redis.
        """
        from ..._errors import ConfigError

        raise ConfigError(f"{self.url.redacted} is not a Redis backend; it has no redis-py client")

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections. The backend may be used again afterwards (reconnects)."""

    # SYNC-TEXT: "without awaiting, e.g. after their event loop has closed" -> "at once"
    def discard(self) -> None:
        """Release connections without awaiting, e.g. after their event loop has closed.

        The backend may be used again afterwards (reconnects). Backends without
        connections have nothing to release.
        """
        return None
