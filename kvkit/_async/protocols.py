"""Public protocols that user code types against (``kvkit.AsyncCache``, ...)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

from .._ttl import TTL
from .._types import CacheStats

__all__ = ["AsyncCache"]

_F = TypeVar("_F", bound=Callable[..., Any])


@runtime_checkable
class AsyncCache(Protocol):
    """The cache API, implemented by ``client.cache`` on every backend."""

    @property
    def stats(self) -> CacheStats:
        """Hit/miss/set/delete/error counters of this view."""
        ...

    async def get(self, key: str, default: Any = None) -> Any:
        """Return the value under ``key`` or ``default``."""
        ...

    async def set(self, key: str, value: Any, ttl: TTL = None) -> None:
        """Store ``value`` under ``key``."""
        ...

    async def add(self, key: str, value: Any, ttl: TTL = None) -> bool:
        """Store only if absent (atomic); return whether stored."""
        ...

    async def delete(self, key: str) -> bool:
        """Delete ``key``; return whether it existed."""
        ...

    async def exists(self, key: str) -> bool:
        """Return whether ``key`` holds a value."""
        ...

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return the values of the keys that exist."""
        ...

    async def set_many(self, mapping: Mapping[str, Any], ttl: TTL = None) -> None:
        """Store every item with the same TTL in one round trip."""
        ...

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Delete keys; return how many existed."""
        ...

    async def incr(self, key: str, delta: int = 1, ttl: TTL = None) -> int:
        """Atomically add ``delta``; return the new value."""
        ...

    async def ttl(self, key: str) -> float | None:
        """Remaining seconds; ``None`` if missing; ``math.inf`` without expiry."""
        ...

    async def touch(self, key: str, ttl: TTL = None) -> bool:
        """Set a new TTL; return whether the key exists."""
        ...

    async def clear(self) -> int:
        """Delete this view's keys (SCAN); return how many."""
        ...

    async def get_or_set(
        self, key: str, factory: Callable[[], Any], ttl: TTL = None, *, lock_timeout: float = 10.0
    ) -> Any:
        """Return the value, computing it once across callers on a miss."""
        ...

    def cached(
        self, ttl: TTL = None, *, key: str | Callable[..., str] | None = None
    ) -> Callable[[_F], _F]:
        """Memoizing decorator."""
        ...

    def namespace(self, name: str) -> AsyncCache:
        """Child view with its own prefix."""
        ...
