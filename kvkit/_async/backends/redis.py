"""The Redis backend (redis.asyncio), also driving fakeredis: one code path for both.

Reliability policy lives here, once: redis-py's own retries are switched off and
:meth:`AsyncRedisBackend.run` retries only operations the caller marks idempotent, on
transient errors, with exponential backoff and jitter; every redis-py exception is
translated to kvkit's hierarchy with the original chained.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.asyncio import BlockingConnectionPool
from redis.asyncio import Redis as AsyncRedisClient
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, ResponseError

from ..._autopipeline import ON_BY_DEFAULT, AsyncAutoPipeline, AsyncLender, AsyncPoolLender
from ..._backoff import backoff_delay
from ..._compat import acurrent_loop, asleep
from ..._counters import IncrRefused
from ..._errors import BackendError
from ..._keys import glob_escape
from ..._loops import LoopLocal, release_elsewhere
from ..._lua import LuaScript
from ..._near_cache import NearCache
from ..._near_channel import InvalidationChannel, channel_connector
from ..._pipeline import pack_command
from ..._redis_compat import adrop_client
from ..._redis_errors import REDIS_ERRORS, is_retryable, translate
from ..._redis_kwargs import connection_kwargs, maint_notifications_off, tls_kwargs
from .base import (
    AsyncBackend,
    AsyncCacheDriver,
    AsyncLimiterDriver,
    AsyncLockDriver,
    AsyncQueueDriver,
    AsyncSessionDriver,
)
from .redis_lock import AsyncRedisLockDriver
from .redis_queue import AsyncRedisQueueDriver
from .redis_ratelimit import AsyncRedisLimiterDriver
from .redis_sessions import AsyncRedisSessionDriver

if TYPE_CHECKING:
    from ..._settings import Settings
    from ..._urls import ParsedURL


# Lua rather than MULTI: redis.asyncio's Cluster pipelines cannot run transactions.
_INCR = LuaScript.load("cache/incr")
# INCRBY's error replies (Redis and fakeredis word them alike), mapped to IncrRefused.
_INCR_OVERFLOW = "increment or decrement would overflow"
_INCR_NOT_INTEGER = "not an integer or out of range"
_PERSIST = LuaScript.load("cache/persist")
_DELETE_IF_EQUAL = LuaScript.load("cache/delete_if_equal")


async def _raw_command(pool: Any, args: tuple[Any, ...]) -> Any:
    """Send one command on a pooled connection and read its raw reply.

    The hot path of the cache: it skips redis-py's per-call machinery (retry wrapper,
    response callbacks, metrics hooks), which costs more than the work kvkit adds on top.
    kvkit's own policy (``run``) still applies around it.
    """
    conn = await pool.get_connection()
    try:
        await conn.send_command(*args)
        return await conn.read_response()
    except ResponseError:
        raise  # an error reply was read in full: the connection is clean
    except BaseException:
        # Error, timeout or cancellation with a reply possibly in flight: this connection
        # must never serve another caller, or it would hand them our reply.
        await conn.disconnect(nowait=True)
        raise
    finally:
        await pool.release(conn)


# SYNC-TEXT: "of a closed event loop (its sockets go with its pool)" -> "(nothing to close)"
def _abandon(pipe: AsyncAutoPipeline) -> None:
    """Forget the pipeline of a closed event loop (its sockets go with its pool)."""
    pipe.abandon()


async def _raw_replies(lender: AsyncLender, commands: list[bytes]) -> list[Any]:
    """Send packed commands in one write on a lent connection; read all their replies.

    Error replies come back in the list (as exceptions), so every reply is read and the
    connection stays clean; anything else that goes wrong discards the connection.
    """
    conn = await lender.borrow()
    broken = True
    try:
        await conn.send_packed_command([b"".join(commands)])
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await conn.read_response())
            except ResponseError as exc:
                replies.append(exc)
        broken = False
        return replies
    finally:
        await lender.give_back(conn, broken=broken)


def _values(replies: list[Any]) -> list[bytes | None]:
    """GET replies as values; the first error reply (e.g. WRONGTYPE) is raised."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def _flusher(near: NearCache) -> Callable[[BaseException], None]:
    def flush(exc: BaseException) -> None:
        near.flush()

    return flush


if True:  # ASYNC

    async def _outcome(future: Any) -> Any:
        """A future's result, or its ``ResponseError`` as a value (every reply is read)."""
        try:
            return await future
        except ResponseError as exc:
            return exc


class AsyncRedisCacheDriver(AsyncCacheDriver):
    """Cache primitives as single Redis commands (or one pipelined round trip).

    With a near cache (``backend.near``), reads are tracked reads that fill it, and every
    write drops its keys from it before it is sent and again once it is done: a read in
    flight meanwhile cannot leave the old value behind (see :mod:`kvkit._near_cache`).
    """

    def __init__(self, backend: AsyncRedisBackend) -> None:
        self._b = backend
        self.near = backend.near

    def _forget(self, keys: list[str]) -> None:
        near = self.near
        if near is not None:
            near.invalidate(keys)

    async def get(self, key: str) -> bytes | None:
        if self.near is not None:
            return (await self._b.near_read([key]))[0]
        value: bytes | None = await self._b.command("GET", key, idempotent=True)
        return value

    async def set(self, key: str, value: bytes, ttl_ms: int | None) -> None:
        self._forget([key])
        try:
            if ttl_ms is None:
                await self._b.command("SET", key, value, idempotent=True)
            else:
                await self._b.command("SET", key, value, "PX", ttl_ms, idempotent=True)
        finally:
            self._forget([key])

    async def add(self, key: str, value: bytes, ttl_ms: int | None) -> bool:
        self._forget([key])
        try:
            # Not retried: after a lost reply a retry would report False for our own write.
            return bool(
                await self._b.run(lambda r: r.set(key, value, px=ttl_ms, nx=True), idempotent=False)
            )
        finally:
            self._forget([key])

    async def delete(self, key: str) -> bool:
        self._forget([key])
        try:
            return bool(await self._b.run(lambda r: r.delete(key), idempotent=True))
        finally:
            self._forget([key])

    async def exists(self, key: str) -> bool:
        return bool(await self._b.run(lambda r: r.exists(key), idempotent=True))

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        if not keys:
            return []
        if self.near is not None:
            return await self._b.near_read(keys)
        return list(await self._b.command("MGET", *keys, idempotent=True))

    async def set_many(self, items: list[tuple[str, bytes]], ttl_ms: int | None) -> None:
        if not items:
            return
        keys = [key for key, _ in items]
        self._forget(keys)
        try:
            await self._set_many(items, ttl_ms)
        finally:
            self._forget(keys)

    async def _set_many(self, items: list[tuple[str, bytes]], ttl_ms: int | None) -> None:
        async def write(r: Any) -> Any:
            if ttl_ms is None:
                return await r.mset(dict(items))
            # One round trip; MULTI so readers never see half of the batch.
            pipe = r.pipeline(transaction=True)
            for key, value in items:
                pipe.set(key, value, px=ttl_ms)
            return await pipe.execute()

        await self._b.run(write, idempotent=True)

    async def delete_many(self, keys: list[str]) -> int:
        if not keys:
            return 0
        self._forget(keys)
        try:
            return await self._delete_many(keys)
        finally:
            self._forget(keys)

    async def _delete_many(self, keys: list[str]) -> int:
        return int(await self._b.run(lambda r: r.delete(*keys), idempotent=True))

    async def incr(self, key: str, delta: int, ttl_ms: int | None) -> int:
        args = [delta, "" if ttl_ms is None else ttl_ms]
        self._forget([key])
        try:
            # Not retried: a retry after a lost reply would add delta twice.
            return int(await self._b.eval(_INCR, [key], args, idempotent=False))
        except BackendError as exc:
            if isinstance(exc.__cause__, ResponseError):
                text = str(exc.__cause__)
                if _INCR_OVERFLOW in text:
                    raise IncrRefused(overflow=True) from exc
                if _INCR_NOT_INTEGER in text:
                    raise IncrRefused(overflow=False) from exc
            raise
        finally:
            self._forget([key])

    async def pttl(self, key: str) -> int | None:
        value = int(await self._b.run(lambda r: r.pttl(key), idempotent=True))
        return None if value == -2 else value

    async def expire(self, key: str, ttl_ms: int | None) -> bool:
        # A new TTL is a write too: the cached entry's deadline would be wrong.
        self._forget([key])
        try:
            if ttl_ms is None:
                return bool(await self._b.eval(_PERSIST, [key], [], idempotent=True))
            return bool(await self._b.run(lambda r: r.pexpire(key, ttl_ms), idempotent=True))
        finally:
            self._forget([key])

    async def clear(self, prefix: str) -> int:
        near = self.near
        if near is not None:
            near.flush()
        try:
            return await self._clear(prefix)
        finally:
            if near is not None:
                near.flush()

    async def _clear(self, prefix: str) -> int:
        pattern = glob_escape(prefix) + "*"

        async def sweep(r: Any) -> int:
            deleted = 0
            batch: list[bytes] = []
            async for key in r.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += int(await r.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(await r.unlink(*batch))
            return deleted

        return int(await self._b.run(sweep, idempotent=True))

    async def delete_if_equal(self, key: str, value: bytes) -> bool:
        self._forget([key])
        try:
            return bool(await self._b.eval(_DELETE_IF_EQUAL, [key], [value], idempotent=True))
        finally:
            self._forget([key])


# SYNC-TEXT: ", on the async side, re-created when the running event loop changes, because
#   asyncio connections cannot be shared between loops (pytest-asyncio gives each test its
#   own)." -> " shared."
class AsyncRedisBackend(AsyncBackend):
    """``redis[s]://``, ``valkey[s]://`` and ``unix://``: one bounded pool per server+db.

    The redis-py client is created lazily on first use (constructors do no I/O) and, on the
    async side, re-created when the running event loop changes, because asyncio
    connections cannot be shared between loops (pytest-asyncio gives each test its own).
    """

    kind = "redis"

    def __init__(self, url: ParsedURL, settings: Settings) -> None:
        super().__init__(url, settings)
        options = url.options
        self.socket_timeout: float = options.get("socket_timeout", settings.socket_timeout)
        self.connect_timeout: float = options.get("connect_timeout", settings.connect_timeout)
        self.retries: int = options.get("retries", settings.retries)
        self.max_connections: int = options.get("max_connections", settings.max_connections)
        # async: Tasks share round trips unless ?auto_pipeline=false.
        # sync: Threads share round trips only with ?auto_pipeline=true (see ON_BY_DEFAULT).
        self.auto_pipeline: bool = options.get("auto_pipeline", ON_BY_DEFAULT)
        size = self._near_cache_size(settings)
        self.near: NearCache | None = NearCache(size) if size else None
        # Invalidation channels by server ((None, None): the URL's own server).
        self._channels: dict[tuple[str | None, int | None], InvalidationChannel] = {}
        self._channels_lock = threading.Lock()
        # async: One redis-py client (and pool) per event loop: see kvkit._loops.
        # sync: One redis-py client (and pool) for all threads: see kvkit._loops.
        self._clients: LoopLocal[Any] = LoopLocal(self._build, self._drop)
        # async: One auto-pipeline per event loop, borrowing from that loop's pool.
        # sync: One auto-pipeline for all threads, borrowing from the pool.
        self._pipes: LoopLocal[AsyncAutoPipeline] = LoopLocal(self._new_pipe, _abandon)
        self._cache = AsyncRedisCacheDriver(self)

    # -- connection management ---------------------------------------------------------
    def _connection_kwargs(self) -> dict[str, Any]:
        """The redis-py arguments every client of this backend (and its subclasses) takes."""
        return {
            **connection_kwargs(
                self.url, socket_timeout=self.socket_timeout, connect_timeout=self.connect_timeout
            ),
            # kvkit decides what is retried (idempotent operations only), not redis-py.
            "retry": Retry(NoBackoff(), 0),
        }

    def _pool_kwargs(self) -> dict[str, Any]:
        url = self.url
        kwargs: dict[str, Any] = {
            **self._connection_kwargs(),
            "db": url.db,
            **maint_notifications_off(),
        }
        if url.path is not None:
            kwargs["connection_class"] = UnixDomainSocketConnection
            kwargs["path"] = url.path
        else:
            kwargs["host"], kwargs["port"] = url.hosts[0]
            kwargs["connection_class"] = Connection
            if url.spec.tls:
                kwargs["connection_class"] = SSLConnection
                kwargs.update(tls_kwargs(url))
        return kwargs

    def _build(self) -> Any:
        # Typed as Any: the sync and async pool classes differ in how well they are typed.
        pool_class: Any = BlockingConnectionPool
        pool = pool_class(
            max_connections=self.max_connections,
            # Waiting for a free connection is bounded by the socket timeout, so a caller
            # beyond max_connections gets BackendTimeout instead of hanging.
            timeout=self.socket_timeout,
            **self._pool_kwargs(),
        )
        return AsyncRedisClient.from_pool(pool)

    # SYNC-TEXT: "of another (usually closed) event loop without awaiting" -> "at once"
    def _drop(self, client: Any) -> None:
        """Release a client of another (usually closed) event loop without awaiting."""
        adrop_client(client)

    # SYNC-TEXT: "of the running event loop (created on first use)." -> "(created on first
    #   use), shared by all threads."
    # SYNC-TEXT: "Each loop gets its own client and pool of ``max_connections``: asyncio
    #   connections cannot be shared between loops, whether the loops run one after another
    #   (pytest-asyncio) or at the same time (threads each running ``asyncio.run``)." ->
    #   "Its pool holds at most ``max_connections`` connections."
    @property
    def client(self) -> Any:
        """The redis-py client of the running event loop (created on first use).

        Each loop gets its own client and pool of ``max_connections``: asyncio connections
        cannot be shared between loops, whether the loops run one after another
        (pytest-asyncio) or at the same time (threads each running ``asyncio.run``).
        """
        return self._clients.get(acurrent_loop())

    def redis(self) -> Any:
        return self.client

    def _new_pipe(self) -> AsyncAutoPipeline:
        return AsyncAutoPipeline(
            AsyncPoolLender(self.client.connection_pool), timeout=self.socket_timeout
        )

    # SYNC-TEXT: "other tasks of the event loop issue" -> "other threads issue"
    async def command(self, *args: Any, idempotent: bool) -> Any:
        """Run one raw command (no response parsing) under :meth:`run`'s policy.

        Never a blocking command (``BLPOP``, ``XREADGROUP BLOCK``): those need a connection
        of their own (:meth:`run`). Backends without a single connection pool (Cluster)
        override this.

        With auto-pipelining on, it shares a connection and its writes with the commands
        other tasks of the event loop issue meanwhile.
        """
        if self.auto_pipeline:
            packed = pack_command(args)
            # This class's run, not an override: the pipeline's borrowed connection holds
            # what any connection needs (a bounded backend's gate slot). Taking a slot per
            # command as well would let the callers waiting on the pipeline hold every slot
            # while the pipeline waits for one: nothing would move until the timeout.
            return await AsyncRedisBackend.run(
                self, lambda r: self._pipes.get(acurrent_loop()).call(packed), idempotent=idempotent
            )
        return await self.run(
            lambda r: _raw_command(r.connection_pool, args), idempotent=idempotent
        )

    async def eval(
        self, script: LuaScript, keys: list[str], args: list[Any], *, idempotent: bool
    ) -> Any:
        """Run ``script`` with EVALSHA (raw reply), loading it first if the server lacks it.

        A NOSCRIPT reply means the script did not run, so loading it and running it again is
        safe even for a non-idempotent script.
        """
        try:
            return await self.command(
                "EVALSHA", script.sha, len(keys), *keys, *args, idempotent=idempotent
            )
        except BackendError as exc:
            if not isinstance(exc.__cause__, NoScriptError):
                raise
        # One token, as redis-py expects: on Cluster it routes "SCRIPT LOAD" to every primary.
        await self.command("SCRIPT LOAD", script.source, idempotent=True)
        return await self.command(
            "EVALSHA", script.sha, len(keys), *keys, *args, idempotent=idempotent
        )

    # -- near cache ------------------------------------------------------------------------------
    def _near_cache_size(self, settings: Settings) -> int:
        """Entries of the near cache (0: none): the URL's ``near_cache``, else Settings'."""
        size: int = self.url.options.get("near_cache", settings.near_cache)
        return size

    def channel(self, host: str | None = None, port: int | None = None) -> InvalidationChannel:
        """The invalidation channel of a server (default: the URL's), created on first use."""
        key = (host, port)
        channel = self._channels.get(key)
        if channel is None:
            near = self.near
            assert near is not None, "only a backend with a near cache has channels"
            with self._channels_lock:
                channel = self._channels.get(key)
                if channel is None:
                    connect = channel_connector(
                        self.url,
                        host=host,
                        port=port,
                        socket_timeout=self.socket_timeout,
                        connect_timeout=self.connect_timeout,
                    )
                    where = self.url.redacted if host is None else f"{host}:{port}"
                    channel = InvalidationChannel(
                        connect, near, where=where, timeout=self.socket_timeout
                    )
                    self._channels = {**self._channels, key: channel}
                    near.on_poll(self._poll_channels)
        return channel

    def _poll_channels(self) -> None:
        for channel in self._channels.values():
            channel.poll()

    async def near_read(self, keys: list[str]) -> list[bytes | None]:
        """Read ``keys`` (one round trip) for the near cache, which keeps what it may.

        Each key is read with ``GET`` and ``PTTL`` on a connection whose client tracking is
        on and redirected to the live invalidation channel; until the channel is live,
        keys are read without being cached.
        """
        values: list[bytes | None] = await self.run(
            lambda r: self._near_read(r, keys, None, None), idempotent=True
        )
        return values

    async def _near_read(
        self, client: Any, keys: list[str], host: str | None, port: int | None
    ) -> list[bytes | None]:
        near = self.near
        assert near is not None
        commands = [pack_command(("GET", key)) for key in keys]
        commands += [pack_command(("PTTL", key)) for key in keys]
        session = self.channel(host, port).session()
        if session is None:
            replies = await self._replies(client, keys[0], commands, None)
            return _values(replies[: len(keys)])
        token, client_id = session
        tracking = pack_command(("CLIENT", "TRACKING", "on", "REDIRECT", client_id))
        ticket = near.begin(keys)
        try:
            replies = await self._replies(client, keys[0], commands, (token, tracking))
            values = _values(replies[: len(keys)])
            pttls = [reply if isinstance(reply, int) else -2 for reply in replies[len(keys) :]]
        except BaseException:
            near.abandon(ticket)
            raise
        near.finish(ticket, values, pttls)
        return values

    async def _replies(
        self,
        client: Any,
        key: str,
        commands: list[bytes],
        setup: tuple[object, bytes] | None,
    ) -> list[Any]:
        """The replies of ``commands`` (sent after ``setup`` when given), errors included.

        ``key`` routes the commands on Cluster. A failed setup flushes the near cache: the
        reads after it were not tracked, so nothing they return may be cached.
        """
        near = self.near
        assert near is not None
        if True:  # ASYNC
            if self.auto_pipeline:
                futures = self._reply_pipe(client, key).call_many(
                    commands,
                    setup=None if setup is None else (*setup, _flusher(near)),
                )
                return [await _outcome(future) for future in futures]
        lender = self._reply_lender(client, key)
        if setup is None:
            return await _raw_replies(lender, commands)
        replies = await _raw_replies(lender, [setup[1], *commands])
        if isinstance(replies[0], Exception):
            near.flush()
        return replies[1:]

    if True:  # ASYNC

        def _reply_pipe(self, client: Any, key: str) -> AsyncAutoPipeline:
            """The auto-pipeline that serves ``key`` (Cluster: its node's)."""
            return self._pipes.get(acurrent_loop())

    def _reply_lender(self, client: Any, key: str) -> AsyncLender:
        """Where a connection for ``key`` comes from without auto-pipelining."""
        return AsyncPoolLender(client.connection_pool)

    async def run(self, op: Callable[[Any], Awaitable[Any]], *, idempotent: bool) -> Any:
        """Run ``op(client)``, translating errors and retrying idempotent operations.

        Args:
            idempotent: Whether repeating the operation after an unknown outcome is safe.
            op: The operation; receives the redis-py client.

        Returns:
            What ``op`` returned.

        Raises:
            BackendError: a subclass matching the failure, with the redis-py error chained.
        """
        attempt = 0
        while True:
            try:
                return await op(self.client)
            except REDIS_ERRORS as exc:
                if not idempotent or attempt >= self.retries or not is_retryable(exc):
                    raise translate(exc, self.url.redacted) from exc
            await asleep(backoff_delay(attempt))
            attempt += 1

    # -- AsyncBackend ------------------------------------------------------------------------
    async def ping(self) -> None:
        await self.run(lambda r: r.ping(), idempotent=True)

    async def server_version(self) -> str | None:
        info = await self.run(lambda r: r.info("server"), idempotent=True)
        # Valkey reports a frozen redis_version (7.2.4) for old clients' sake: its own
        # version is valkey_version, named so that a Valkey is not mistaken for Redis 7.2.
        if info.get("valkey_version") is not None:
            return f"valkey {info['valkey_version']}"
        version = info.get("redis_version")
        return None if version is None else str(version)

    def cache_driver(self) -> AsyncCacheDriver:
        return self._cache

    def session_driver(self) -> AsyncSessionDriver:
        return AsyncRedisSessionDriver(self)

    def queue_driver(self) -> AsyncQueueDriver:
        return AsyncRedisQueueDriver(self)

    def limiter_driver(self) -> AsyncLimiterDriver:
        return AsyncRedisLimiterDriver(self)

    def lock_driver(self) -> AsyncLockDriver:
        return AsyncRedisLockDriver(self)

    async def aclose(self) -> None:
        self._close_channels()
        here = acurrent_loop()
        for loop, pipe in self._pipes.take_idle(here):
            if loop is here:
                await pipe.aclose()
            else:
                pipe.abandon()
        # async: Pools of loops still running in other threads are left to those loops.
        for loop, client in self._clients.take_idle(here):
            if loop is here:
                # Closing a broken connection must not raise.
                with contextlib.suppress(*REDIS_ERRORS):
                    await client.aclose()
            else:  # bound to a stopped or closed loop (async side only): drop, not close
                self._drop(client)

    def _close_channels(self) -> None:
        with self._channels_lock:
            channels, self._channels = self._channels, {}
        for channel in channels.values():
            channel.close()

    def discard(self) -> None:
        self._close_channels()
        for _, pipe in self._pipes.take_all():
            pipe.abandon()
        for loop, client in self._clients.take_all():
            release_elsewhere(loop, self._drop, client)


class AsyncFakeRedisBackend(AsyncRedisBackend):
    """``fakeredis://[NAME]``: the Redis driver over a fakeredis server (private or shared).

    No auto-pipelining (fakeredis answers in-process: no round trip to share) and no near
    cache (fakeredis has no client tracking).
    """

    kind = "fakeredis"

    def __init__(self, url: ParsedURL, settings: Settings) -> None:
        from ..._fakeredis import fake_server

        super().__init__(url, settings)
        self.auto_pipeline = False
        self._server = fake_server(url.name)

    def _build(self) -> Any:
        from fakeredis import FakeAsyncRedis

        # The same pool contract as redis://: at most max_connections, and a
        # caller beyond that waits up to the socket timeout for a free one. fakeredis
        # defaults to a non-blocking pool of 100 that fails the 101st caller at once.
        pool_class: Any = functools.partial(BlockingConnectionPool, timeout=self.socket_timeout)
        return FakeAsyncRedis(
            server=self._server,
            connection_pool_class=pool_class,
            max_connections=self.max_connections,
        )

    def _near_cache_size(self, settings: Settings) -> int:
        return 0

    async def server_version(self) -> str | None:
        # fakeredis has no INFO command; report the library instead.
        await self.ping()
        from fakeredis import __version__

        return f"fakeredis {__version__}"
