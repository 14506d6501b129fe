"""The driver layer's contracts: the backend base class and one driver per service.

Every backend offers the services health primitives and one driver for each service
(:class:`AsyncCacheDriver`, :class:`AsyncSessionDriver`, :class:`AsyncQueueDriver`),
returned by the backend's typed factories. The contracts live here, together, so that
drivers depend on this module only and never on the service that uses them (httpcore's
``_backends/base.py`` pairs its interfaces the same way).

A driver stores bytes under full keys; it never serializes values and never applies
policy. Services (cache, sessions, queues) never build backend commands themselves.
"""

from __future__ import annotations

import abc
import time
from typing import TYPE_CHECKING, Any

from ..._errors import ConfigError
from ..._queue_types import RawMessage
from ..._sessions_base import SessionRecord

if TYPE_CHECKING:
    from ..._near_cache import NearCache
    from ..._ratelimit_base import LimitSpec, RawDecision
    from ..._settings import Settings
    from ..._urls import ParsedURL


class AsyncCacheDriver(abc.ABC):
    """Storage primitives of the cache. Keys are full keys; TTLs are ms (None: none).

    Attributes:
        near: The driver's near cache, if it has one: the service serves hits from it
            (``near.get(key)``) before calling :meth:`get`/:meth:`get_many`, which fill it;
            the driver keeps it coherent with every write.
    """

    near: NearCache | None = None

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


class AsyncSessionDriver(abc.ABC):
    """Storage primitives of the session service, each atomic (one round trip).

    Keys are full keys built by the service. ``fields`` map data item names to encoded
    values. TTLs are milliseconds; ``None`` means no limit. Expiry follows the rules of
    :mod:`kvkit._async.sessions`: ``min(now + idle, deadline)``, restarted by every call
    that says it slides.
    """

    @abc.abstractmethod
    async def create(
        self,
        key: str,
        fields: dict[str, bytes],
        idle_ms: int | None,
        max_age_ms: int | None,
        index: str | None,
        meta: bytes | None = None,
    ) -> None:
        """Store a new session and add it to ``index`` (the owner's index key).

        The driver records the creation time and, on every call that slides, the time of
        that use (for :meth:`details`); ``meta`` is the encoded metadata, kept as is
        (also by :meth:`rotate`).
        """

    @abc.abstractmethod
    async def get(self, key: str) -> dict[str, bytes] | None:
        """Return the data fields and slide; ``None`` when missing."""

    @abc.abstractmethod
    async def replace(self, key: str, fields: dict[str, bytes]) -> bool:
        """Replace all data fields of an existing session and slide."""

    @abc.abstractmethod
    async def update(
        self, key: str, fields: dict[str, bytes], remove: list[str]
    ) -> dict[str, bytes] | None:
        """Delete ``remove``, set ``fields`` on an existing session, slide; new fields."""

    @abc.abstractmethod
    async def delete(self, key: str) -> bool:
        """Delete the session (and its index entry); return whether it existed."""

    @abc.abstractmethod
    async def touch(self, key: str, idle_ms: int | None, change: bool) -> bool:
        """Slide, first storing ``idle_ms`` as the idle TTL when ``change``."""

    @abc.abstractmethod
    async def rotate(self, old: str, new: str) -> bool:
        """Rename the session and its index entry, then slide; ``True`` if ``new`` exists."""

    @abc.abstractmethod
    async def pttl(self, key: str) -> int | None:
        """Remaining ms, ``-1`` without expiry, ``None`` when missing."""

    @abc.abstractmethod
    async def exists(self, key: str) -> bool:
        """Return whether the session exists."""

    @abc.abstractmethod
    async def members(self, index: str) -> list[str]:
        """Return the keys of the live sessions in ``index``, pruning dead entries."""

    @abc.abstractmethod
    async def delete_members(self, index: str) -> int:
        """Delete every session in ``index`` and the index; return how many existed."""

    @abc.abstractmethod
    async def details(self, index: str) -> list[SessionRecord]:
        """Like :meth:`members`, with each session's creation time, last use and metadata."""


class AsyncQueueDriver(abc.ABC):
    """Storage primitives of queues; one call is one atomic step (and one round trip).

    ``key`` is the queue's base key (``{prefix}{name}`` with the name as hash tag); ids are
    message ids, receipts the backend's handles of one delivery. ``lease`` is the expected
    delivery counter of a receipt's lease (0: do not check).
    """

    @abc.abstractmethod
    async def push(
        self,
        key: str,
        items: list[tuple[str, bytes]],
        delay_ms: int,
        dedupe: str | None,
        dedupe_ms: int,
        maxlen: int | None,
    ) -> str | None:
        """Enqueue ``(id, payload)`` items; on a ``dedupe`` hit return the original id."""

    @abc.abstractmethod
    async def pop(
        self,
        key: str,
        group: str,
        consumer: str,
        count: int,
        visibility_ms: int,
        max_deliveries: int,
        maxlen: int | None,
        timeout: float | None,
    ) -> list[RawMessage]:
        """Promote due delayed messages, reclaim expired leases, then read new ones."""

    @abc.abstractmethod
    async def ack(self, key: str, group: str, items: list[tuple[str, str | None]]) -> int:
        """Acknowledge and delete ``(id, receipt)`` items; return how many were leased."""

    @abc.abstractmethod
    async def nack(
        self,
        key: str,
        group: str,
        *,
        id: str,
        receipt: str | None,
        lease: int,
        delay_ms: int,
        max_deliveries: int,
        counted: bool,
        reason: str,
        maxlen: int | None,
    ) -> int:
        """Give a leased message back: 0 not leased, 1 requeued, 2 dead-lettered."""

    @abc.abstractmethod
    async def extend(
        self, key: str, group: str, id: str, receipt: str | None, lease: int, idle_ms: int
    ) -> bool:
        """Renew a lease so that it is ``idle_ms`` old; return whether it was held."""

    @abc.abstractmethod
    async def dead_letter(self, key: str, group: str, receipt: str, reason: str) -> bool:
        """Move one leased delivery to the dead letters with ``reason``."""

    @abc.abstractmethod
    async def dead_letters(self, key: str, count: int) -> list[RawMessage]:
        """Return the oldest ``count`` dead letters."""

    @abc.abstractmethod
    async def requeue_dead(self, key: str, ids: set[str] | None, maxlen: int | None) -> int:
        """Move dead letters (all, or with these ids) back to the queue."""

    async def delete_dead(self, key: str, ids: set[str] | None) -> int:
        """Delete dead letters (all, or those with these message ids); return how many.

        Raises:
            NotImplementedError: the driver cannot delete single dead letters.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot delete dead letters")

    @abc.abstractmethod
    async def purge(self, key: str, group: str, dead: bool) -> int:
        """Delete every message (and the dead letters if ``dead``); return how many."""

    @abc.abstractmethod
    async def stats(
        self, key: str, group: str, consumer_idle_ms: int, maxlen: int | None
    ) -> tuple[int, int, int, int, int, float | None, float | None]:
        """``(ready, pending, delayed, dead, consumers, oldest_pending_s, oldest_ready_s)``.

        ``oldest_ready_s``: seconds since the oldest message still waiting for ``group``
        became ready (pushed, given back or due), ``None`` when none waits. Drivers that
        cannot tell may return the first six items only.
        """

    async def throughput(self, key: str) -> tuple[int, list[tuple[int, int, int]]]:
        """``(store clock in Unix ms, [(bucket, pushed, acknowledged), ...])``.

        Buckets are ``RATE_BUCKET_MS`` long (``bucket * RATE_BUCKET_MS`` is the start, in
        Unix ms) and the last ``RATE_BUCKETS`` are kept (:mod:`kvkit._queue_base`).
        Drivers that do not count return no buckets.
        """
        return int(time.time() * 1000), []

    async def names(self, prefix: str, limit: int) -> list[str]:
        """Names of up to ``limit`` queues stored under ``prefix`` (``{prefix}{NAME}...``).

        Drivers that cannot list their queues return none.
        """
        return []

    @abc.abstractmethod
    async def gc(self, key: str, group: str, consumer_idle_ms: int) -> None:
        """Remove consumers that hold nothing and were idle for ``consumer_idle_ms``."""

    @abc.abstractmethod
    async def expire(self, key: str, ttl_ms: int, message_ids: list[str]) -> None:
        """Give every stored key of the queue, and the push records of ``message_ids``, a TTL.

        Drivers of in-process stores, whose queues end with the process, do nothing.
        """


# -- rate limits ----------------------------------------------------------------------------------
class AsyncLimiterDriver(abc.ABC):
    """Storage primitives of rate limiters; each call is one atomic step (one round trip).

    ``key`` is the full key of one limiter key; ``spec`` carries the algorithm and its
    integer parameters (see :mod:`kvkit._ratelimit_base`, whose arithmetic every driver
    must reproduce exactly). Times are the backend's own clock (the server's on Redis).
    """

    @abc.abstractmethod
    async def hit(self, key: str, spec: LimitSpec, cost: int) -> RawDecision:
        """Decide on a hit of ``cost`` units and record it when admitted (never retried)."""

    @abc.abstractmethod
    async def peek(self, key: str, spec: LimitSpec) -> RawDecision:
        """Decide on a hit of one unit without recording anything."""

    @abc.abstractmethod
    async def reset(self, key: str) -> bool:
        """Forget everything recorded for ``key``; return whether there was anything."""


class AsyncLockDriver(abc.ABC):
    """Storage primitives of distributed locks; each call is atomic and one round trip.

    ``key`` is a lock's full key and ``fence`` its fencing counter's key (same hash slot);
    the stored value is ``"<token>:<owner>"`` (see :mod:`kvkit._lock_base`). Owner ids are
    unique per acquisition. Expiry runs on the server's clock (the engine's, in memory).
    """

    @abc.abstractmethod
    async def acquire(self, key: str, fence: str, owner: str, ttl_ms: int) -> tuple[int, int]:
        """Take the lock if free: ``(token, 0)``, else ``(0, the holder's pttl in ms)``.

        The token comes from the counter (incremented, never expiring). Called again with
        the same ``owner`` while it holds the lock, it returns the same token and renews
        the TTL: a retry after a lost reply is safe.
        """

    @abc.abstractmethod
    async def release(self, key: str, owner: str, token: int | None) -> bool:
        """Delete the lock if ``owner`` (and ``token``, unless ``None``) holds it."""

    @abc.abstractmethod
    async def extend(self, key: str, owner: str, token: int, ttl_ms: int) -> bool:
        """Make the lock expire ``ttl_ms`` from now if ``owner`` and ``token`` hold it."""

    @abc.abstractmethod
    async def exists(self, key: str) -> bool:
        """Return whether anyone holds the lock."""

    @abc.abstractmethod
    async def held(self, prefix: str) -> list[tuple[str, bytes, int]]:
        """``(key, value, pttl ms)`` of the lock keys ``prefix{NAME}`` held now.

        Only keys of that shape (a brace-enclosed name right after ``prefix``); pttl is
        ``-1`` for a key without expiry.
        """


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
    def session_driver(self) -> AsyncSessionDriver:
        """Return the sessions driver on this backend (see ``*_sessions.py``)."""

    @abc.abstractmethod
    def queue_driver(self) -> AsyncQueueDriver:
        """Return the queues driver on this backend (see ``*_queue.py``)."""

    def limiter_driver(self) -> AsyncLimiterDriver:
        """Return the rate-limit driver on this backend (see ``*_ratelimit.py``).

        Not abstract, so that a backend written before rate limits existed keeps working
        for everything else.

        Raises:
            ConfigError: the backend has no rate limits.
        """
        raise ConfigError(f"{self.url.redacted} does not support rate limits")

    def lock_driver(self) -> AsyncLockDriver:
        """Return the locks driver on this backend (see ``*_lock.py``).

        Not abstract, like :meth:`limiter_driver`.

        Raises:
            ConfigError: the backend has no locks.
        """
        raise ConfigError(f"{self.url.redacted} does not support locks")

    def redis(self) -> Any:
        """Return the underlying redis-py client (Redis backends only).

        Raises:
            ConfigError: the backend is not Redis.
        """
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
