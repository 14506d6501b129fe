"""Auto-pipelining for redis.asyncio connections: the async client's I/O shell.

Commands that tasks of one event loop issue while others are in flight are written to a
shared connection together (one ``write`` per loop iteration), and their replies are
handed back in order by :class:`kvkit._pipeline.ReplyQueue`. This module owns the
connection side of that; the bookkeeping without I/O lives in :mod:`kvkit._pipeline`.

How a connection is used:

* It is *borrowed* from the backend's own pool (through a :class:`AsyncLender`) when the first
  command arrives, and given back once nothing has been in flight or queued for
  ``linger`` seconds (a few milliseconds), so the pool's bound (``max_connections``) and
  its wait-then-``BackendTimeout`` contract hold unchanged, and operations that need a
  connection of their own (a transaction, a blocking read) still find one. The linger
  spares a server whose requests each make one call a pool check-out per request.
* While borrowed, its transport delivers bytes straight to a :class:`_Link` protocol (the
  transport's protocol is swapped, and swapped back on return): replies are parsed and
  dispatched in the I/O callback itself, with no reader task and no per-command timer.
* A caller that is cancelled leaves its waiter in the queue; the reply to its command is
  read and dropped. No reply can reach another caller, so the connection stays usable.
* The connection is failed (every waiter gets ``ConnectionError`` or ``TimeoutError``,
  which the backend's retry policy then judges) when it closes, when the bytes are not
  RESP, when a ``READONLY`` reply shows it talks to a replica, or when no reply arrives
  for ``timeout`` seconds while commands are outstanding.
* A connection held for longer than ``hold`` seconds under continuous load is retired
  (drained, then given back) and a fresh one borrowed, so callers waiting for a pool
  connection are never starved by the pipeline.

The sync client's counterpart, for threads, is :mod:`kvkit._threadpipeline`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from redis.exceptions import ConnectionError, MaxConnectionsError, TimeoutError

from ._pipeline import HOLD, LINGER, ReplyQueue, fresh_error

__all__ = [
    "ON_BY_DEFAULT",
    "AsyncAutoPipeline",
    "AsyncGatedLender",
    "AsyncLender",
    "AsyncPoolLender",
]

ON_BY_DEFAULT = True
"""Async clients pipeline unless ``?auto_pipeline=false``: tasks share round trips for free."""


class AsyncLender(Protocol):
    """Lends connected redis.asyncio connections (a pool, a Cluster node's ``anode_pool``)."""

    async def borrow(self) -> Any:
        """Return a connected connection, waiting like any pool user would."""

    async def give_back(self, connection: Any, *, broken: bool) -> None:
        """Return ``connection``; ``broken``: its state is unknown, disconnect it first."""


class AsyncPoolLender:
    """Lends connections of a redis.asyncio connection pool (waiting like ``get_connection``)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def borrow(self) -> Any:
        return await self.pool.get_connection()

    async def give_back(self, connection: Any, *, broken: bool) -> None:
        try:
            if broken:
                await connection.disconnect(nowait=True)
        finally:
            await self.pool.release(connection)


class AsyncGatedLender:
    """Takes one of the backend's gate slots for as long as a connection is lent.

    The Sentinel and Cluster backends bound their operations with a gate of
    ``max_connections`` slots (their redis-py pools fail instead of waiting); a pipeline's
    connection is one more operation holding a connection, so it holds a slot too.
    """

    def __init__(self, inner: AsyncLender, gate: Any, timeout: float) -> None:
        self.inner = inner
        self.gate = gate
        self.timeout = timeout

    async def borrow(self) -> Any:
        if not await self.gate.acquire(self.timeout):
            raise MaxConnectionsError("no connection available")
        try:
            return await self.inner.borrow()
        except BaseException:
            self.gate.release()
            raise

    async def give_back(self, connection: Any, *, broken: bool) -> None:
        try:
            await self.inner.give_back(connection, broken=broken)
        finally:
            self.gate.release()


def _transport(connection: Any) -> asyncio.Transport:
    # Works around: redis.asyncio keeps a connection's stream writer in the private
    # ``_writer``; its ``transport`` (public asyncio API) is what the pipeline reads from.
    transport: asyncio.Transport = connection._writer.transport
    return transport


def _where(connection: Any) -> str:
    host = getattr(connection, "host", None)
    return f"{host}:{getattr(connection, 'port', '?')}" if host else "the server"


class _Link(asyncio.Protocol):
    """One borrowed connection while the pipeline writes to it (its transport's protocol)."""

    def __init__(
        self, pipe: AsyncAutoPipeline, connection: Any, transport: asyncio.Transport
    ) -> None:
        self.pipe = pipe
        self.connection = connection
        self.transport = transport
        self.original = transport.get_protocol()
        self.queue = ReplyQueue()
        self.paused = False
        self.broken = False
        self.since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.seen = 0  # replies dispatched when the timer was armed
        self.linger: asyncio.TimerHandle | None = None  # gives the idle connection back
        self.idle_seen = 0  # replies dispatched when the linger timer was armed

    # -- asyncio.Protocol ----------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        queue = self.queue
        try:
            queue.feed(data)
        except Exception as exc:  # not RESP, or a reply nobody asked for
            self.pipe._fail(self, ConnectionError(f"bad reply stream from {self.where}: {exc}"))
            return
        if queue.readonly:
            self.pipe._fail(self, ConnectionError(f"{self.where} is a read-only replica"))
        elif not len(queue):
            self.pipe._idle(self)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipe._fail(self, ConnectionError(f"connection to {self.where} lost"))
        # redis-py's stream reader must see the close too (its disconnect() waits for it).
        self.original.connection_lost(exc)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.pipe._flush()

    # -- timeout -------------------------------------------------------------------------
    @property
    def where(self) -> str:
        return _where(self.connection)

    def arm(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        """Start the no-progress timer unless it runs already."""
        if self.timer is None:
            self.seen = self.queue.replies
            self.timer = loop.call_at(loop.time() + timeout, self._expired, loop, timeout)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.timer = None
        if self.broken or not len(self.queue):
            return
        if self.queue.replies == self.seen:
            self.pipe._fail(self, TimeoutError(f"Timeout reading from {self.where}"))
        else:  # replies are flowing: the connection is alive, keep watching
            self.arm(loop, timeout)


class AsyncAutoPipeline:
    """Coalesces the commands of one event loop's tasks onto borrowed connections.

    Args:
        lender: Where connections come from (and go back to).
        timeout: Seconds without any reply, while commands are outstanding, after which
            the connection is failed with ``TimeoutError``.
        hold: Seconds a continuously busy connection is kept before rotating.
        linger: Seconds an idle connection is kept before it goes back to the pool.
    """

    def __init__(
        self, lender: AsyncLender, *, timeout: float, hold: float = HOLD, linger: float = LINGER
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._lender = lender
        self._timeout = timeout
        self._hold = hold
        self._linger = linger
        self._link: _Link | None = None
        # Packed commands not written yet: for ``_link``, or for the next link when there
        # is none (then their waiters wait in ``_unlinked``, in the same order).
        self._pending: list[bytes] = []
        self._unlinked: list[Any] = []
        self._flush_scheduled = False
        self._borrowing = False
        self._closed = False
        self._draining: set[_Link] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        # What the connection behind ``_pending`` has been set up with (see call_many).
        self._setup: object = None

    # -- submitting ------------------------------------------------------------------------
    def call(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue one packed command; the future gets its reply (or its error)."""
        future = self._loop.create_future()
        link = self._link
        if link is None:
            self._queue_unlinked(future, packed)
            return future
        queue = link.queue
        if not self._pending and not len(queue) and not link.paused:
            # Nothing in flight: waiting for company would only add latency.
            queue.push(future)
            link.transport.write(packed)
            link.arm(self._loop, self._timeout)
            return future
        queue.push(future)
        self._pending.append(packed)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return future

    def call_many(
        self,
        commands: list[bytes],
        *,
        setup: tuple[object, bytes, Callable[[BaseException], None]] | None = None,
    ) -> list[asyncio.Future[Any]]:
        """Queue commands back to back on one connection; one future per command.

        Args:
            commands: Packed commands.
            setup: ``(token, packed, on_error)``: a command that must have run on the
                connection before ``commands`` (turning client tracking on). It is written
                first unless the connection was set up with the same ``token`` already.
                Its reply goes to no caller: an error reply forgets the token (the next
                call sends it again) and calls ``on_error`` at once, in the callback that
                reads it, before any reply written after it reaches its caller.
        """
        if setup is not None:
            token, packed, on_error = setup
            if self._setup is not token:
                self._setup = token
                self._push(_SetupWaiter(self, token, on_error), packed)
        return [self.call(packed) for packed in commands]

    def _push(self, waiter: Any, packed: bytes) -> None:
        """Queue a command whose waiter is not a future (its result goes to no caller)."""
        link = self._link
        if link is None:
            self._unlinked.append(waiter)
            self._pending.append(packed)
            if not self._borrowing and not self._closed:
                self._borrowing = True
                self._spawn(self._borrow())
            return
        link.queue.push(waiter)
        self._pending.append(packed)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _queue_unlinked(self, future: asyncio.Future[Any], packed: bytes) -> None:
        if self._closed:
            future.set_exception(ConnectionError("the client was closed"))
            return
        self._unlinked.append(future)
        self._pending.append(packed)
        if not self._borrowing:
            self._borrowing = True
            self._spawn(self._borrow())

    def _flush(self) -> None:
        self._flush_scheduled = False
        link = self._link
        if link is None or link.paused or not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        link.transport.write(data)
        link.arm(self._loop, self._timeout)
        if self._loop.time() - link.since > self._hold:
            self._retire(link)

    # -- connection lifecycle -----------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _borrow(self) -> None:
        try:
            connection = await self._lender.borrow()
        except BaseException as exc:
            self._borrowing = False
            waiters, self._unlinked = self._unlinked, []
            self._pending.clear()
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(fresh_error(exc))
            if not isinstance(exc, Exception):
                raise
            return
        self._borrowing = False
        if self._closed:
            await self._lender.give_back(connection, broken=False)
            return
        transport = _transport(connection)
        link = _Link(self, connection, transport)
        transport.set_protocol(link)
        link.since = self._loop.time()
        self._link = link
        for waiter in self._unlinked:
            link.queue.push(waiter)  # cancelled ones too: their commands are in _pending
        self._unlinked.clear()
        self._flush()

    def _idle(self, link: _Link) -> None:
        """``link`` has no command in flight any more."""
        if link is self._link:
            if self._pending:
                return
            loop = self._loop
            if loop.time() - link.since > self._hold:
                # Held long enough: give it back unless a task woken by these replies
                # sends again at once (pool waiters get their turn).
                loop.call_soon(self._release_if_idle, link)
            elif link.linger is None:
                link.idle_seen = link.queue.replies
                link.linger = loop.call_at(loop.time() + self._linger, self._lingered, link)
        elif link in self._draining:
            self._draining.discard(link)
            self._give_back(link, broken=False)

    def _lingered(self, link: _Link) -> None:
        link.linger = None
        if link.queue.replies == link.idle_seen:
            self._release_if_idle(link)
        elif self._is_idle(link):
            # Used meanwhile: idle only since its last reply, so wait once more. (Gone, or
            # busy again: its next idle moment starts a new wait.)
            link.idle_seen = link.queue.replies
            link.linger = self._loop.call_at(self._loop.time() + self._linger, self._lingered, link)

    def _is_idle(self, link: _Link) -> bool:
        """``link`` is the current connection, with nothing in flight or waiting to go."""
        return link is self._link and not len(link.queue) and not self._pending

    def _release_if_idle(self, link: _Link) -> None:
        if self._is_idle(link):
            self._detach()
            self._give_back(link, broken=False)

    def _detach(self) -> None:
        self._link = None
        self._setup = None

    def _retire(self, link: _Link) -> None:
        """Stop writing to ``link``; give it back once its replies are in."""
        self._detach()
        if len(link.queue):
            self._draining.add(link)
        else:
            self._give_back(link, broken=False)

    def _fail(self, link: _Link, error: Exception) -> None:
        """``link`` is unusable: fail its waiters, drop it, give it back broken."""
        if link.broken:
            return
        link.broken = True
        if link is self._link:
            self._detach()
            self._pending.clear()  # written to nobody: their waiters are in link.queue
        self._draining.discard(link)
        link.queue.fail_all(lambda: fresh_error(error))
        link.transport.abort()
        self._give_back(link, broken=True)

    def _give_back(self, link: _Link, *, broken: bool) -> None:
        link.disarm()
        if link.linger is not None:
            link.linger.cancel()
            link.linger = None
        if not broken:
            link.transport.set_protocol(link.original)
        self._spawn(self._lender.give_back(link.connection, broken=broken))

    # -- closing ---------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Fail whatever is outstanding and give every connection back."""
        self._closed = True
        error = ConnectionError("the client was closed")
        for waiter in self._unlinked:
            if not waiter.done():
                waiter.set_exception(fresh_error(error))
        self._unlinked.clear()
        links = [self._link, *self._draining]
        for link in links:
            if link is not None:
                self._fail(link, error)
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def abandon(self) -> None:
        """Forget everything without awaiting (the loop is gone; its sockets are closed)."""
        self._closed = True
        self._link = None
        self._draining.clear()
        self._unlinked.clear()
        self._pending.clear()


class _SetupWaiter:
    """The waiter of a setup command written by :meth:`AsyncAutoPipeline.call_many`."""

    __slots__ = ("_done", "_on_error", "_pipe", "_token")

    def __init__(
        self, pipe: AsyncAutoPipeline, token: object, on_error: Callable[[BaseException], None]
    ) -> None:
        self._pipe = pipe
        self._token = token
        self._on_error = on_error
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any, /) -> None:
        self._done = True

    def set_exception(self, exception: BaseException, /) -> None:
        self._done = True
        if self._pipe._setup is self._token:
            self._pipe._setup = None
        self._on_error(exception)
