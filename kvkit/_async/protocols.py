"""Public protocols that user code types against (``kvkit.AsyncCache``, ...).

One protocol per service, plus :class:`AsyncRedisService` for the original API. The
services implement them; nothing here does I/O or depends on a backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, overload, runtime_checkable

from .._queue_types import Message, QueueStats
from .._ratelimit_base import Rate, RateLimitDecision
from .._sessions_base import SessionInfo
from .._ttl import TTL
from .._types import CacheStats

if TYPE_CHECKING:
    from .queue import AsyncProcessing

__all__ = [
    "AsyncCache",
    "AsyncLock",
    "AsyncQueue",
    "AsyncRateLimiter",
    "AsyncRedisService",
    "AsyncSessionStore",
]

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


@runtime_checkable
class AsyncSessionStore(Protocol):
    """The session API, implemented by ``client.sessions`` on every backend."""

    async def create(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        ttl: TTL = None,
        user_id: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> str:
        """Create a session; return its new id."""
        ...

    async def get(self, session_id: str) -> dict[str, Any] | None:
        """Return the session's data (sliding its idle TTL), or ``None``."""
        ...

    async def set(self, session_id: str, data: Mapping[str, Any]) -> bool:
        """Replace the data of an existing session; return whether it exists."""
        ...

    async def update(
        self,
        session_id: str,
        changes: Mapping[str, Any] | None = None,
        *,
        remove: Iterable[str] = (),
    ) -> dict[str, Any] | None:
        """Atomically merge ``changes`` and drop ``remove``; return the new data."""
        ...

    async def delete(self, session_id: str) -> bool:
        """Delete the session; return whether it existed."""
        ...

    async def touch(self, session_id: str, ttl: TTL = None) -> bool:
        """Restart the idle TTL (optionally a new one); return whether it exists."""
        ...

    async def rotate(self, session_id: str) -> str | None:
        """Move the session to a new id; the old id is invalid at once."""
        ...

    async def ttl(self, session_id: str) -> float | None:
        """Remaining seconds; ``None`` if missing; ``math.inf`` without expiry."""
        ...

    async def exists(self, session_id: str) -> bool:
        """Return whether the session is live (without sliding it)."""
        ...

    @overload
    async def user_sessions(
        self, user_id: str, *, details: Literal[False] = False
    ) -> list[str]: ...

    @overload
    async def user_sessions(self, user_id: str, *, details: Literal[True]) -> list[SessionInfo]: ...

    @overload
    async def user_sessions(
        self, user_id: str, *, details: bool = False
    ) -> list[str] | list[SessionInfo]: ...

    async def user_sessions(
        self, user_id: str, *, details: bool = False
    ) -> list[str] | list[SessionInfo]:
        """Return the user's live sessions: ids, or ``SessionInfo`` with ``details=True``."""
        ...

    async def delete_user(self, user_id: str) -> int:
        """Delete every session of the user; return how many."""
        ...


@runtime_checkable
class AsyncQueue(Protocol):
    """The queue API, implemented by ``client.queue(name)`` on every backend."""

    @property
    def name(self) -> str:
        """The queue's name."""
        ...

    async def push(self, payload: Any, *, delay: Any = None, dedupe_id: str | None = None) -> str:
        """Enqueue ``payload``; return its message id."""
        ...

    async def push_many(self, payloads: Iterable[Any], *, delay: Any = None) -> list[str]:
        """Enqueue several payloads in one round trip; return their ids."""
        ...

    async def pop(self, timeout: float | None = 0) -> Message | None:
        """Lease the next message, waiting up to ``timeout`` seconds (None: forever)."""
        ...

    async def pop_many(self, count: int, timeout: float | None = 0) -> list[Message]:
        """Lease up to ``count`` messages."""
        ...

    async def ack(self, *messages_or_ids: Message | str) -> int:
        """Acknowledge messages; return how many were leased."""
        ...

    async def nack(self, message_or_id: Message | str, *, delay: Any = None) -> None:
        """Give a message back for redelivery."""
        ...

    async def extend(self, message_or_id: Message | str, seconds: Any = None) -> bool:
        """Renew a lease; return whether it was still held."""
        ...

    def process(self, timeout: float | None = 0) -> AsyncProcessing:
        """Context manager: pop, then ack on success or nack on error."""
        ...

    async def consume(
        self,
        handler: Callable[[Message], Any],
        *,
        batch: int = 10,
        stop: Any = None,
        max_messages: int | None = None,
        concurrency: int = 1,
    ) -> int:
        """Run ``handler`` on messages until stopped; return how many were processed."""
        ...

    async def stats(self) -> QueueStats:
        """Counts of ready, pending, delayed and dead messages, and consumers."""
        ...

    async def throughput(self, window: float = 300.0) -> list[dict[str, Any]]:
        """Messages pushed (``in``) and acknowledged (``out``) per 5-second bucket."""
        ...

    async def dead_letters(self, count: int = 100) -> list[Message]:
        """The oldest dead letters."""
        ...

    async def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        """Move dead letters back to the queue; return how many."""
        ...

    async def delete_dead(self, ids: Iterable[str] | None = None) -> int:
        """Delete dead letters (all, or those with these ids) without requeueing them."""
        ...

    async def purge(self, *, dead: bool = False) -> int:
        """Delete every message; return how many."""
        ...


@runtime_checkable
class AsyncRateLimiter(Protocol):
    """A named rate limit, implemented by ``client.rate_limiter(name, rate)`` on every backend."""

    @property
    def name(self) -> str:
        """The limiter's name."""
        ...

    @property
    def rate(self) -> Rate:
        """The limiter's rate."""
        ...

    @property
    def algorithm(self) -> str:
        """``"fixed_window"``, ``"sliding_window"`` or ``"token_bucket"``."""
        ...

    async def hit(self, key: str, cost: int = 1) -> RateLimitDecision:
        """Consume ``cost`` units of ``key``'s allowance if available (atomic)."""
        ...

    async def peek(self, key: str) -> RateLimitDecision:
        """What a hit of cost 1 would get now, consuming nothing."""
        ...

    async def reset(self, key: str) -> None:
        """Give ``key`` its full allowance back."""
        ...


@runtime_checkable
class AsyncRedisService(Protocol):
    """The original ``RedisService`` API, implemented by :class:`kvkit.AsyncClient`.

    Type against it where code only needs the eight legacy methods (e.g. in FastAPI
    dependencies migrated from the original system).
    """

    async def cache_set(self, key: str, value: Any, expire: TTL = None) -> bool:
        """Store ``value`` under ``key`` for ``expire`` (default: the cache TTL)."""
        ...

    async def cache_get(self, key: str) -> Any | None:
        """Return the value under ``key``, or ``None``."""
        ...

    async def cache_delete(self, key: str) -> bool:
        """Delete ``key``; return whether it existed."""
        ...

    async def session_set(
        self, session_id: str, data: Mapping[str, Any], expire: TTL = None
    ) -> bool:
        """Upsert the session ``session_id`` with ``data`` (never revives a strict id)."""
        ...

    async def session_get(self, session_id: str) -> dict[str, Any] | None:
        """Return the session's data, or ``None``."""
        ...

    async def session_delete(self, session_id: str) -> bool:
        """Delete the session; return whether it existed."""
        ...

    async def queue_push(self, queue_name: str, data: Any) -> str:
        """Enqueue ``data`` on ``queue_name``; return the message id."""
        ...

    async def queue_pop(self, queue_name: str, timeout: float | None = 0) -> Any | None:
        """Pop and acknowledge one message; return its payload, or ``None``."""
        ...


# SYNC-TEXT: "``async with lock:``" -> "``with lock:``"
@runtime_checkable
class AsyncLock(Protocol):
    """A distributed lock, returned by ``client.lock(name)`` on every backend.

    ``async with lock:`` acquires (raising :class:`kvkit.LockTimeout` after the lock's
    ``timeout``) and releases. Only the owner can release or extend; each acquisition gets
    a fencing token that is strictly increasing per lock name.
    """

    @property
    def name(self) -> str:
        """The lock's name."""
        ...

    @property
    def token(self) -> int | None:
        """The fencing token of the current hold; ``None`` while not held by this object."""
        ...

    async def acquire(self, *, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire; return whether held (``timeout`` None: the lock's own)."""
        ...

    async def release(self) -> None:
        """Release; :class:`kvkit.LockNotOwned` if this hold no longer owns the lock."""
        ...

    async def extend(self, ttl: float | None = None) -> bool:
        """Expire ``ttl`` seconds from now (default: the lock's); whether still owned."""
        ...

    async def locked(self) -> bool:
        """Return whether anyone holds the lock now."""
        ...

    async def __aenter__(self) -> AsyncLock:
        """Acquire, or raise :class:`kvkit.LockTimeout`."""
        ...

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Release."""
        ...
