"""Auto-pipelining for sync redis-py connections shared by threads (the sync client's shell).

The thread counterpart of :mod:`kvkit._autopipeline`, over the same bookkeeping
(:class:`kvkit._pipeline.ReplyQueue`): threads that issue commands while others are in
flight write them to one shared connection, and a reader thread hands each reply to the
thread whose command it answers. Under the GIL this costs two thread switches per
command, but saves the pool checkout, the per-command socket timeouts and -- above all --
the one-round-trip-per-connection limit that makes many threads on a pool of 20 slower
than a few (see the README's scaling benchmark).

Only threads that meet others use it: a command issued while nothing else is in flight
is exchanged directly on a pooled connection, in the calling thread, as before -- a
single thread pays no thread switch.

How a connection is used (as on the async side):

* It is *borrowed* from the backend's pool when a command arrives and no connection is
  attached, and given back by its reader thread once it has been idle for
  :data:`IDLE` seconds or has been rotated out after :data:`HOLD` seconds of continuous
  use, so ``max_connections`` and the pool's wait-then-``BackendTimeout`` contract hold.
* Only the reader thread gives a connection back, and only after it has stopped reading
  from it: a connection in the pool is never read by anybody else.
* The connection fails (every waiting thread gets ``ConnectionError``/``TimeoutError``,
  which the backend's retry policy then judges) when it closes, when its bytes are not
  RESP, when a ``READONLY`` reply shows a replica, or when no reply arrives for
  ``timeout`` seconds while commands are outstanding.
* After ``fork`` the child forgets the parent's connection (its reader thread did not
  survive) and borrows its own.
"""

from __future__ import annotations

import _thread
import builtins
import contextlib
import os
import socket
import threading
import time
from typing import Any, Protocol

from redis.exceptions import ConnectionError, MaxConnectionsError, ResponseError, TimeoutError

from ._pipeline import HOLD, ReplyQueue, fresh_error

__all__ = ["ON_BY_DEFAULT", "AutoPipeline", "GatedLender", "Lender", "PoolLender"]

ON_BY_DEFAULT = False
"""Sync clients pipeline only with ``?auto_pipeline=true``.

Measured on 2 cores against the default sync path, same threads: about even at 1 thread
(alone, a command is exchanged directly), 5-10 % slower at 2-4 threads, where the reader
thread's switch under the GIL outweighs the round trips it saves; 1.3x at 8 threads and
1.4-1.7x at 16-32, where threads would otherwise queue for the pool's 20 connections.
"""

IDLE = 0.02
"""Seconds without any command after which the reader gives the connection back."""


class Lender(Protocol):
    """Lends connected sync redis-py connections to a pipeline (a pool)."""

    def borrow(self) -> Any:
        """Return a connected connection, waiting like any pool user would."""

    def give_back(self, connection: Any, *, broken: bool) -> None:
        """Return ``connection``; ``broken``: its state is unknown, disconnect it first."""


class PoolLender:
    """Lends connections of a sync redis-py connection pool (waiting like ``get_connection``)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def borrow(self) -> Any:
        return self.pool.get_connection()

    def give_back(self, connection: Any, *, broken: bool) -> None:
        try:
            if broken:
                connection.disconnect()
        finally:
            self.pool.release(connection)


class GatedLender:
    """Takes one of the backend's gate slots for as long as a connection is lent."""

    def __init__(self, inner: Lender, gate: Any, timeout: float) -> None:
        self.inner = inner
        self.gate = gate
        self.timeout = timeout

    def borrow(self) -> Any:
        if not self.gate.acquire(self.timeout):
            raise MaxConnectionsError("no connection available")
        try:
            return self.inner.borrow()
        except BaseException:
            self.gate.release()
            raise

    def give_back(self, connection: Any, *, broken: bool) -> None:
        try:
            self.inner.give_back(connection, broken=broken)
        finally:
            self.gate.release()


def _socket(connection: Any) -> socket.socket:
    # Works around: redis-py's sync connection keeps its socket in the private ``_sock``;
    # the pipeline writes to it and its reader thread reads from it directly.
    sock: socket.socket = connection._sock
    return sock


class _Slot:
    """One thread's waiter: a lock released when its reply (or error) is in."""

    __slots__ = ("_done", "_lock", "error", "result")

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()
        self._done = False
        self.result: Any = None
        self.error: BaseException | None = None

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any, /) -> None:
        self.result = result
        self._done = True
        self._lock.release()

    def set_exception(self, exception: BaseException, /) -> None:
        self.error = exception
        self._done = True
        self._lock.release()

    def wait(self, timeout: float) -> bool:
        return self._lock.acquire(timeout=timeout)


class _Link:
    """One borrowed connection and its reader thread."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.sock = _socket(connection)
        self.queue = ReplyQueue()
        self.since = time.monotonic()
        self.last = self.since  # when a command was last written
        self.retired = False
        self.broken: BaseException | None = None


class AutoPipeline:
    """Shares borrowed connections between the threads of a sync client.

    Args:
        lender: Where connections come from (and go back to).
        timeout: Seconds without any reply, while commands are outstanding, after which
            the connection is failed with ``TimeoutError``.
        hold: Seconds a continuously busy connection is kept before rotating.
    """

    def __init__(self, lender: Lender, *, timeout: float, hold: float = HOLD) -> None:
        self._lender = lender
        self._timeout = timeout
        self._hold = hold
        self._lock = threading.Lock()
        self._link: _Link | None = None
        self._readers: set[threading.Thread] = set()
        self._closed = False
        self._pid = os.getpid()
        self._direct = 0  # commands in flight outside the shared connection
        self.shared = 0
        """Commands sent on a shared connection so far (they met others in flight)."""

    def call(self, packed: bytes) -> Any:
        """Send one packed command and return its reply (raise its error)."""
        if self._pid != os.getpid():
            self._after_fork()
        slot = _Slot()
        with self._lock:
            if self._closed:
                raise ConnectionError("the client was closed")
            link = self._link
            if self._direct == 0 and (link is None or not len(link.queue)):
                # Alone (nothing in flight): no company to share a round trip with, so no
                # reason to pay the reader thread's switch.
                self._direct += 1
                link = None
            else:
                now = time.monotonic()
                if link is None or link.broken is not None or now - link.since > self._hold:
                    if link is not None:
                        link.retired = True  # its reader drains it and gives it back
                    link = self._attach()
                link.queue.push(slot)
                link.last = now
                self.shared += 1
                try:
                    link.sock.sendall(packed)
                except OSError as exc:
                    self._fail(link, ConnectionError(f"Error writing to the server: {exc}"))
        if link is None:
            try:
                return self._exchange(packed)
            finally:
                with self._lock:
                    self._direct -= 1
        # The reader fails every waiter after `timeout` without progress; the margin
        # only guards against a reader that died without failing them.
        if not slot.wait(self._timeout * 2 + 1.0):
            with self._lock:
                if link.broken is None:
                    self._fail(link, TimeoutError("no reply from the server"))
            slot.wait(1.0)
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _exchange(self, packed: bytes) -> Any:
        """One command on a pooled connection of its own, in this thread."""
        connection = self._lender.borrow()
        broken = True
        try:
            connection.send_packed_command([packed])
            reply = connection.read_response()
            broken = False
            return reply
        except ResponseError:
            broken = False  # an error reply was read in full: the connection is clean
            raise
        finally:
            self._lender.give_back(connection, broken=broken)

    def _attach(self) -> _Link:
        """Borrow a connection and start its reader (caller holds the lock)."""
        link = _Link(self._lender.borrow())
        self._link = link
        reader = threading.Thread(target=self._read, args=(link,), daemon=True)
        reader.name = "kvkit-pipeline-reader"
        self._readers.add(reader)
        reader.start()
        return link

    def _fail(self, link: _Link, error: BaseException) -> None:
        """Mark ``link`` failed (caller holds the lock) and wake its reader.

        Only the reader thread fails the waiters (and gives the connection back): it is
        the only thread that dispatches replies, so no waiter can be answered twice.
        """
        if link.broken is not None:
            return
        link.broken = error
        if self._link is link:
            self._link = None
        with contextlib.suppress(OSError):
            link.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader at once

    def _read(self, link: _Link) -> None:
        sock = link.sock
        queue = link.queue
        try:
            while True:
                with self._lock:
                    if link.broken is not None:
                        break
                    busy = len(queue) > 0
                    if not busy and (
                        link.retired
                        or self._closed
                        or link is not self._link
                        or time.monotonic() - link.last > IDLE
                    ):
                        if self._link is link:
                            self._link = None
                        break
                sock.settimeout(self._timeout if busy else IDLE)
                try:
                    data = sock.recv(65536)
                except builtins.TimeoutError:  # socket.timeout: the socket's own timeout
                    if busy:
                        raise TimeoutError("Timeout reading from the server") from None
                    continue
                if not data:
                    raise ConnectionError("connection closed by the server")
                queue.feed(data)
                if queue.readonly:
                    raise ConnectionError("the server is a read-only replica")
        except Exception as exc:
            with self._lock:
                self._fail(
                    link,
                    exc
                    if isinstance(exc, ConnectionError | TimeoutError)
                    else ConnectionError(f"bad reply stream: {exc}"),
                )
        finally:
            error = link.broken
            if error is not None:
                queue.fail_all(lambda: fresh_error(error))
            self._give_back(link)

    def _give_back(self, link: _Link) -> None:
        broken = link.broken is not None
        if not broken:
            link.sock.settimeout(link.connection.socket_timeout)
        try:
            self._lender.give_back(link.connection, broken=broken)
        finally:
            with self._lock:
                self._readers.discard(threading.current_thread())

    # -- closing ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop lending: wait (briefly) for the readers to give their connections back."""
        with self._lock:
            self._closed = True
            link, self._link = self._link, None
            if link is not None:
                link.retired = True
            readers = list(self._readers)
        for reader in readers:
            reader.join(timeout=self._timeout + IDLE + 1.0)

    def abandon(self) -> None:
        """Forget everything (nothing to wait for)."""
        self.close()

    def _after_fork(self) -> None:
        # Only the forking thread survives: locks may be held, readers are gone, and the
        # parent's connection must not be read here (the pool resets itself after fork).
        self._lock = threading.Lock()
        self._link = None
        self._readers = set()
        self._pid = os.getpid()
        self._direct = 0
