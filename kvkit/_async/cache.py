"""The cache service: key layout, validation, TTLs, codec, stats, single-flight, fail-open."""

from __future__ import annotations

import functools
import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .._cache_base import key_maker
from .._compat import AsyncMutex, acall, asleep
from .._counters import IncrRefused, check_delta
from .._errors import BackendError, InvalidArgument
from .._keys import (
    NAMESPACE_MARK,
    validate_cache_key,
    validate_cache_keys,
    validate_namespace_name,
)
from .._metrics import FAILED_OPEN, Meter
from .._serde import Codec
from .._ttl import TTL, TTLResolver, remaining_seconds, seconds_to_ms
from .._types import CacheStats
from .backends.base import AsyncCacheDriver
from .metered import metered

if TYPE_CHECKING:
    from .._near_cache import NearCache

__all__ = ["AsyncCacheService"]

log = logging.getLogger("kvkit.cache")

_F = TypeVar("_F", bound=Callable[..., Any])
_MISSING = object()
# Bounds of the poll interval of callers waiting for another process's factory.
_WAIT_MIN = 0.005
_WAIT_MAX = 0.1


# SYNC-TEXT: "(threads or tasks)" -> "(threads)"
class _KeyLocks:
    """Per-key locks for single-flight inside one client (threads or tasks).

    Entries are reference-counted and dropped when nobody holds or waits for them, so
    the map never grows with the key space.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[AsyncMutex, int]] = {}

    def acquire_ref(self, key: str) -> AsyncMutex:
        lock, refs = self._locks.get(key, (None, 0))
        if lock is None:
            lock = AsyncMutex()
        self._locks[key] = (lock, refs + 1)
        return lock

    def release_ref(self, key: str) -> None:
        lock, refs = self._locks[key]
        if refs <= 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, refs - 1)


@metered(
    "cache",
    *("get", "add", "delete", "exists", "get_many", "set_many", "delete_many", "incr"),
    *("ttl", "touch", "clear", "get_or_set"),
    _set="set",
)
class AsyncCacheService:
    """A cache view: one key prefix on one backend. Implements :class:`kvkit.AsyncCache`.

    Obtain it from ``client.cache`` (or ``cache.namespace(name)``); do not construct it
    directly.
    """

    def __init__(
        self,
        driver: AsyncCacheDriver,
        *,
        prefix: str,
        lock_prefix: str,
        ttl: TTLResolver,
        codec: Codec,
        fail_open: bool,
        where: str,
        flights: _KeyLocks | None = None,
        guard: Any = None,
        totals: CacheStats | None = None,
    ) -> None:
        self._driver = driver
        self._prefix = prefix
        self._lock_prefix = lock_prefix
        self._ttl = ttl
        self._codec = codec
        self._fail_open = fail_open
        self._where = where
        self._flights = flights if flights is not None else _KeyLocks()
        # Guards the per-key lock map: a thread lock on both sides, because the map is
        # shared by every thread of a sync client (held for map updates only).
        self._guard = guard if guard is not None else threading.Lock()
        self._stats = CacheStats()
        # Hits and misses of every view of the client together (its metrics).
        self._totals = totals if totals is not None else CacheStats()

    _meter: Meter | None = None  # set by the client's metrics recorder

    def __repr__(self) -> str:
        return f"<kvkit cache {self._prefix!r} on {self._where}>"

    @property
    def prefix(self) -> str:
        """The full key prefix of this view (e.g. ``"kvkit:cache:"``)."""
        return self._prefix

    @property
    def stats(self) -> CacheStats:
        """Live counters of this view."""
        return self._stats

    # -- helpers ---------------------------------------------------------------------------
    def _key(self, key: str) -> str:
        return self._prefix + validate_cache_key(key)

    def _failed(self, exc: BackendError, op: str) -> None:
        """Count a backend error; re-raise unless the cache fails open."""
        self._stats.errors += 1
        if not self._fail_open:
            raise exc
        if self._meter is not None:
            FAILED_OPEN.set(exc)  # the operation returns, yet it failed
        log.warning("cache %s failed open on %s: %s", op, self._where, exc)

    # -- reads ---------------------------------------------------------------------------------
    async def get(self, key: str, default: Any = None) -> Any:
        """Return the value stored under ``key``, or ``default``.

        Raises:
            InvalidArgument: the key is invalid.
            DecodeError: the stored bytes cannot be decoded.
            BackendError: the backend failed (unless ``cache_fail_open``).
        """
        value = await self._lookup(key, self._key(key), "get")
        return default if value is _MISSING else value

    async def exists(self, key: str) -> bool:
        """Return whether ``key`` holds a value."""
        full = self._key(key)
        try:
            return await self._driver.exists(full)
        except BackendError as exc:
            self._failed(exc, "exists")
            return False

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return ``{key: value}`` for the keys that hold a value, in one round trip."""
        names = validate_cache_keys(keys)
        if not names:
            return {}
        near = self._driver.near
        if near is not None:
            return await self._get_many_near(names, near)
        try:
            raws = await self._driver.get_many([self._prefix + k for k in names])
        except BackendError as exc:
            self._failed(exc, "get_many")
            return {}
        out = self._codec.decode_many(names, raws)
        self._stats.hits += len(out)
        self._stats.misses += len(names) - len(out)
        self._totals.hits += len(out)
        self._totals.misses += len(names) - len(out)
        return out

    async def _get_many_near(self, names: list[str], near: NearCache) -> dict[str, Any]:
        """:meth:`get_many` with a near cache: the keys it lacks in one round trip."""
        prefix = self._prefix
        found = [near.get(prefix + name) for name in names]
        missing = [name for name, raw in zip(names, found, strict=True) if raw is None]
        near_hits = len(names) - len(missing)
        if missing:
            try:
                fetched = iter(await self._driver.get_many([prefix + k for k in missing]))
            except BackendError as exc:
                self._failed(exc, "get_many")
                return {}
            found = [raw if raw is not None else next(fetched) for raw in found]
        out = self._codec.decode_many(names, found)
        self._stats.hits += len(out)
        self._stats.near_hits += near_hits
        self._stats.misses += len(names) - len(out)
        return out

    async def ttl(self, key: str) -> float | None:
        """Remaining lifetime in seconds; ``None`` if missing; ``math.inf`` if no expiry."""
        full = self._key(key)
        try:
            ms = await self._driver.pttl(full)
        except BackendError as exc:
            self._failed(exc, "ttl")
            return None
        return remaining_seconds(ms)

    # -- writes ------------------------------------------------------------------------------
    async def set(self, key: str, value: Any, ttl: TTL = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` (``None``: the cache's default TTL).

        Raises:
            InvalidArgument: the key or TTL is invalid (nothing is sent).
            SerializationError: the value cannot be encoded (nothing is written).
        """
        await self._set(key, value, ttl)

    async def _set(self, key: str, value: Any, ttl: TTL) -> bool:
        """:meth:`set`, telling whether the value was stored (``False``: failed open)."""
        full = self._key(key)
        ttl_ms = self._ttl.ms(ttl)
        data = self._codec.encode(key, value)
        try:
            await self._driver.set(full, data, ttl_ms)
        except BackendError as exc:
            self._failed(exc, "set")
            return False
        self._stats.sets += 1
        return True

    async def add(self, key: str, value: Any, ttl: TTL = None) -> bool:
        """Store ``value`` only if ``key`` is absent (atomic); return whether it was stored."""
        full = self._key(key)
        ttl_ms = self._ttl.ms(ttl)
        data = self._codec.encode(key, value)
        try:
            added = await self._driver.add(full, data, ttl_ms)
        except BackendError as exc:
            self._failed(exc, "add")
            return False
        if added:
            self._stats.sets += 1
        return added

    async def set_many(self, mapping: Mapping[str, Any], ttl: TTL = None) -> None:
        """Store every item of ``mapping`` with the same TTL, in one round trip.

        Everything is validated and encoded first: one bad key or value writes nothing.
        """
        if not isinstance(mapping, Mapping):
            raise InvalidArgument(f"mapping must be a Mapping, not {type(mapping).__name__!r}")
        ttl_ms = self._ttl.ms(ttl)
        encode = self._codec.encode
        items = [(self._key(k), encode(k, v)) for k, v in mapping.items()]
        if not items:
            return
        try:
            await self._driver.set_many(items, ttl_ms)
        except BackendError as exc:
            self._failed(exc, "set_many")
            return
        self._stats.sets += len(items)

    async def delete(self, key: str) -> bool:
        """Delete ``key``; return whether it existed."""
        full = self._key(key)
        try:
            deleted = await self._driver.delete(full)
        except BackendError as exc:
            self._failed(exc, "delete")
            return False
        if deleted:
            self._stats.deletes += 1
        return deleted

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Delete ``keys``; return how many existed."""
        names = validate_cache_keys(keys)
        if not names:
            return 0
        try:
            count = await self._driver.delete_many([self._prefix + k for k in names])
        except BackendError as exc:
            self._failed(exc, "delete_many")
            return 0
        self._stats.deletes += count
        return count

    async def incr(self, key: str, delta: int = 1, ttl: TTL = None) -> int:
        """Atomically add ``delta`` to the integer under ``key``; return the new value.

        A missing key starts at 0 and gets ``ttl``; an existing key keeps its expiry.
        Not retried on connection errors (a retry could count twice).

        Counters are signed 64-bit integers, as in Redis, on every backend; results are
        exact over the whole range.

        Raises:
            InvalidArgument: ``delta`` is not an int in the signed 64-bit range, the stored
                value is not a signed 64-bit integer, or the result would overflow that
                range (nothing is changed).
        """
        full = self._key(key)
        delta = check_delta(delta)
        ttl_ms = self._ttl.ms(ttl)
        try:
            value = await self._driver.incr(full, delta, ttl_ms)
        except IncrRefused as exc:
            # Named by the caller's key, never the internal prefixed one.
            raise exc.for_key(key) from exc
        except BackendError as exc:
            self._failed(exc, "incr")
            return 0
        self._stats.sets += 1
        return value

    async def touch(self, key: str, ttl: TTL = None) -> bool:
        """Give ``key`` a new TTL (``kvkit.FOREVER`` removes it); return whether it exists."""
        full = self._key(key)
        ttl_ms = self._ttl.ms(ttl)
        try:
            return await self._driver.expire(full, ttl_ms)
        except BackendError as exc:
            self._failed(exc, "touch")
            return False

    async def clear(self) -> int:
        """Delete every key of this view (and of its namespaces); return how many.

        Uses SCAN on Redis, never KEYS or FLUSHDB: other data in the same db is untouched.
        """
        try:
            count = await self._driver.clear(self._prefix)
        except BackendError as exc:
            self._failed(exc, "clear")
            return 0
        self._stats.deletes += count
        return count

    # -- single-flight -------------------------------------------------------------------------
    # SYNC-TEXT: "threads, tasks and processes" -> "threads and processes"
    # SYNC-TEXT: " On the async client ``factory`` may be sync or async." -> ""
    async def get_or_set(
        self,
        key: str,
        factory: Callable[[], Any],
        ttl: TTL = None,
        *,
        lock_timeout: float = 10.0,
    ) -> Any:
        """Return the cached value, computing and storing it with ``factory`` on a miss.

        Single-flight across threads, tasks and processes: concurrent callers on a cold key
        run ``factory`` once; the others wait for its value. The lock expires after
        ``lock_timeout`` seconds, so a dead holder is taken over. On the async client
        ``factory`` may be sync or async.

        Raises:
            InvalidArgument: bad key, TTL or ``lock_timeout``.
            SerializationError: the factory's value cannot be encoded (nothing stored;
                the lock is released).
            Exception: whatever ``factory`` raised (the lock is released).
        """
        full = self._key(key)
        ttl_ms = self._ttl.ms(ttl)
        lock_ms = seconds_to_ms(lock_timeout, "lock_timeout")
        value = await self._lookup(key, full)
        if value is not _MISSING:
            return value
        with self._guard:
            local = self._flights.acquire_ref(full)
        try:
            async with local:
                # async: Another thread/task of this client may have filled it while we queued.
                # sync: Another thread of this client may have filled it while we queued.
                value = await self._lookup(key, full)
                if value is not _MISSING:
                    return value
                return await self._fill(key, full, factory, ttl_ms, lock_ms)
        finally:
            with self._guard:
                self._flights.release_ref(full)

    async def _lookup(self, key: str, full: str, op: str = "get_or_set") -> Any:
        """Read ``full``: its decoded value, or ``_MISSING`` (also when it failed open)."""
        near = self._driver.near
        if near is not None:
            raw = near.get(full)
            if raw is not None:  # served in-process: no round trip
                self._stats.hits += 1
                self._stats.near_hits += 1
                return self._codec.decode(key, raw)
        try:
            raw = await self._driver.get(full)
        except BackendError as exc:
            self._failed(exc, op)
            return _MISSING
        if raw is None:
            self._stats.misses += 1
            self._totals.misses += 1
            return _MISSING
        self._stats.hits += 1
        self._totals.hits += 1
        return self._codec.decode(key, raw)

    async def _fill(
        self, key: str, full: str, factory: Callable[[], Any], ttl_ms: int | None, lock_ms: int
    ) -> Any:
        """Take the cross-process lock and run the factory, or wait for whoever has it."""
        lock_key = self._lock_prefix + full
        token = secrets.token_hex(16).encode()
        wait = _WAIT_MIN
        while True:
            try:
                acquired = await self._driver.add(lock_key, token, lock_ms)
            except BackendError as exc:
                self._failed(exc, "get_or_set")
                return await acall(factory)  # fail-open: compute without the lock
            if acquired:
                try:
                    value = await acall(factory)
                    data = self._codec.encode(key, value)
                    await self._driver.set(full, data, ttl_ms)
                    self._stats.sets += 1
                    return value
                except BackendError as exc:
                    self._failed(exc, "get_or_set")
                    return value
                finally:
                    try:
                        await self._driver.delete_if_equal(lock_key, token)
                    except BackendError as exc:
                        # The lock expires on its own after lock_timeout.
                        log.warning("could not release cache lock on %s: %s", self._where, exc)
            # Someone else is computing: poll for the value (or for the lock to vanish,
            # e.g. their factory failed or they died and the lock expired).
            await asleep(wait)
            wait = min(wait * 2, _WAIT_MAX)
            value = await self._lookup(key, full)
            if value is not _MISSING:
                return value

    # -- decorator ---------------------------------------------------------------------------
    # SYNC-TEXT: "On the async client the wrapper is a coroutine function and awaits the
    #   decorated function's result when it is awaitable." -> "The wrapper is a plain
    #   function."
    def cached(
        self, ttl: TTL = None, *, key: str | Callable[..., str] | None = None
    ) -> Callable[[_F], _F]:
        """Memoize a function in this cache (single-flight, like :meth:`get_or_set`).

        Args:
            ttl: TTL of each stored result.
            key: ``None`` (default) derives the key from the function's qualified name and
                its arguments; a format string such as ``"user:{user_id}"`` is filled from
                the bound arguments (defaults applied); a callable receives the call's
                arguments and returns the key.

        Returns:
            A decorator. The wrapped function has ``.cache_key(*args, **kwargs)`` and
            ``.invalidate(*args, **kwargs)`` helpers. On the async client the wrapper is a
            coroutine function and awaits the decorated function's result when it is
            awaitable.
        """
        self._ttl.ms(ttl)  # validate now, not on first call

        def decorator(func: _F) -> _F:
            make_key = key_maker(func, key, self._codec)

            @functools.wraps(func)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                return await self.get_or_set(
                    make_key(*args, **kwargs), lambda: func(*args, **kwargs), ttl
                )

            async def invalidate(*args: Any, **kwargs: Any) -> bool:
                return await self.delete(make_key(*args, **kwargs))

            wrapper.cache_key = make_key  # type: ignore[attr-defined]
            wrapper.invalidate = invalidate  # type: ignore[attr-defined]
            return wrapper  # type: ignore[return-value]

        return decorator

    # -- views -----------------------------------------------------------------------------------
    def namespace(self, name: str) -> AsyncCacheService:
        """Return a child view whose keys live under ``{prefix}#{name}:``.

        The ``#`` marks a namespace segment: cache keys may not start with ``#`` and names
        may not contain ``:``, so the key ``"users:1"`` and ``namespace("users")["1"]``
        are different entries, and ``clear()`` on the child deletes only the child's keys
        (and its own namespaces'). The child has its own :attr:`stats`.

        Raises:
            InvalidArgument: ``name`` is empty, too long, or contains ``:``, ``{`` or ``}``.
        """
        validate_namespace_name(name)
        # type(self): a child of a measured view is measured too (see metered.py).
        child = type(self)(
            self._driver,
            prefix=f"{self._prefix}{NAMESPACE_MARK}{name}:",
            lock_prefix=self._lock_prefix,
            ttl=self._ttl,
            codec=self._codec,
            fail_open=self._fail_open,
            where=self._where,
            flights=self._flights,
            guard=self._guard,
            totals=self._totals,
        )
        child._meter = self._meter
        return child
