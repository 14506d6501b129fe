"""The near cache's invalidation channel: one subscribed connection and its reader thread.

Redis client tracking (``CLIENT TRACKING on REDIRECT <id>``) remembers the keys a
connection reads and, when one of them changes, sends an invalidation message to the
client ``<id>``, which must be subscribed to ``__redis__:invalidate`` (RESP2). This module
is that client: a plain (sync) redis-py connection, subscribed, read by a daemon thread --
the same code for the sync and the async client, independent of any event loop, so
invalidations are applied even while an event loop is busy.

Lifecycle (all transitions flush the store, see :class:`kvkit._near_cache.NearCache`):

* Started lazily by the first near-cache read; until it is subscribed, reads go to Redis
  and nothing is cached.
* Live: :meth:`InvalidationChannel.session` returns ``(token, client id)``; tracked reads
  redirect their invalidations to that id, and their replies may be cached.
* Lost (EOF, error, no PONG within the socket timeout): the store is flushed at once,
  the session ends, and the thread reconnects with backoff. A new session gets a new
  token, so every data connection turns tracking on again with the new id.
* After ``fork`` the child's channels are dead (threads do not survive it): they are
  reset and their stores flushed in the child.

The read path also calls :meth:`InvalidationChannel.poll` now and then (see
``kvkit._near_cache.POLL_INTERVAL``) so that a thread keeping the interpreter busy does not
delay invalidations by a whole GIL switch interval.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._backoff import backoff_delay
from ._near_cache import INVALIDATION_CHANNEL, NearCache, invalidated_keys
from ._redis_kwargs import connection_kwargs, tls_kwargs

if TYPE_CHECKING:
    from ._urls import ParsedURL

__all__ = ["InvalidationChannel", "channel_connector"]

log = logging.getLogger("kvkit.near_cache")

PING_INTERVAL = 1.0
"""Seconds of silence after which the channel PINGs (a half-open connection is noticed)."""

POLL_WAIT = 0.002
"""Seconds the read path waits for the channel's lock before it leaves the work to the
thread (which then holds the lock only while it reads what has already arrived)."""

_CHANNELS: weakref.WeakSet[InvalidationChannel] = weakref.WeakSet()


def channel_connector(
    url: ParsedURL,
    *,
    host: str | None = None,
    port: int | None = None,
    socket_timeout: float,
    connect_timeout: float,
) -> Callable[[], Any]:
    """A factory of sync redis-py connections for the channel (``host``: not the URL's).

    Same credentials, TLS settings and client name as the backend's own connections;
    redis-py's health checks off (the channel PINGs by itself, see ``PING_INTERVAL``).
    """
    from redis.backoff import NoBackoff
    from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection
    from redis.retry import Retry

    kwargs: dict[str, Any] = {
        **connection_kwargs(
            url,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            health_checks=False,
        ),
        "retry": Retry(NoBackoff(), 0),
        # RESP2: invalidations then arrive as Pub/Sub messages on the channel it subscribes.
        "protocol": 2,
    }
    connection_class: Any = Connection
    if url.path is not None and host is None:
        connection_class = UnixDomainSocketConnection
        kwargs["path"] = url.path
    else:
        kwargs["host"], kwargs["port"] = (host, port) if host is not None else url.hosts[0]
        if url.spec.tls:
            connection_class = SSLConnection
            kwargs.update(tls_kwargs(url))

    def connect() -> Any:
        return connection_class(**kwargs)

    return connect


def _wait_readable(sock: Any, timeout: float) -> bool:
    """Whether ``sock`` became readable within ``timeout`` (poll(): no FD_SETSIZE limit)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    readable, _, _ = select.select([sock], [], [], timeout)  # pragma: no cover - Windows
    return bool(readable)


def _socket(connection: Any) -> Any:
    # Works around: redis-py's sync connection keeps its socket in the private ``_sock``;
    # the thread waits on it with select() without holding the connection's lock.
    return connection._sock


class InvalidationChannel:
    """Receives the invalidations of one Redis server for one :class:`NearCache`.

    Args:
        connect: Returns a new, unconnected sync redis-py connection to the server.
        store: The near cache to invalidate.
        where: The redacted server address, for log messages.
        timeout: Seconds to wait for a PONG before the connection counts as lost.
    """

    def __init__(
        self, connect: Callable[[], Any], store: NearCache, *, where: str, timeout: float
    ) -> None:
        self._connect = connect
        self._store = store
        self._where = where
        self._timeout = timeout
        self._lock = threading.Lock()  # guards the connection's reads and the state
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._connection: Any = None
        self._session: tuple[object, int] | None = None
        self._ping_sent: float | None = None
        self._heard = 0.0  # when the last message arrived
        _CHANNELS.add(self)

    # -- for readers -------------------------------------------------------------------------
    def session(self) -> tuple[object, int] | None:
        """``(token, client id)`` while live, else ``None`` (starting the thread if needed).

        The token changes with every new subscription: a data connection set up for an
        older token must turn tracking on again before its reads may be cached.
        """
        if self._thread is None or self._pid != os.getpid():
            self._start()
        return self._session

    def poll(self) -> None:
        """Apply invalidations that have arrived (called now and then by the read path)."""
        # Wait briefly rather than skip when the channel's thread holds the lock: that
        # thread may be holding it while it waits for the GIL, which this (busy) thread
        # holds -- blocking here hands the GIL over and lets the thread finish at once.
        if self._connection is None or not self._lock.acquire(timeout=POLL_WAIT):
            return
        try:
            self._drain()
        except Exception:  # the thread sees the same failure and reconnects
            self._lost()
        finally:
            self._lock.release()

    def close(self) -> None:
        """Stop the thread and close the connection (the store is flushed).

        Does not wait for the thread: it notices within :data:`PING_INTERVAL` and ends.
        """
        self._stop.set()
        with self._lock:
            self._disconnect()
        self._thread = None
        self._store.flush()

    # -- the thread ----------------------------------------------------------------------------
    def _start(self) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's thread is not here
            self._reset_after_fork()
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            thread = threading.Thread(
                target=self._run, name=f"kvkit-near-cache {self._where}", daemon=True
            )
            self._thread = thread
        thread.start()

    def _reset_after_fork(self) -> None:
        # Only the forking thread survives: a lock another thread held stays locked here.
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._thread = None
        self._session = None
        self._connection = None  # the parent's socket: never read it here
        self._store.reset_after_fork()

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                self._subscribe()
                attempt = 0
                self._listen()
            except Exception as exc:
                if not self._stop.is_set():
                    log.warning("near cache invalidations from %s lost: %s", self._where, exc)
            with self._lock:
                self._lost()
            self._stop.wait(backoff_delay(min(attempt, 6)))
            attempt += 1

    def _subscribe(self) -> None:
        connection = self._connect()
        try:
            connection.connect()
            connection.send_command("CLIENT", "ID")
            client_id = int(connection.read_response())
            connection.send_command("SUBSCRIBE", INVALIDATION_CHANNEL)
            connection.read_response()  # [b"subscribe", channel, 1]
        except BaseException:
            connection.disconnect()
            raise
        with self._lock:
            if self._stop.is_set():
                connection.disconnect()
                return
            # Anything cached before this point had its invalidations sent elsewhere.
            self._store.flush()
            self._connection = connection
            self._ping_sent = None
            self._heard = time.monotonic()
            self._session = (object(), client_id)

    def _listen(self) -> None:
        while not self._stop.is_set():
            connection = self._connection
            if connection is None:
                return
            sock = _socket(connection)
            if sock is None:
                raise ConnectionError("connection closed")
            readable = _wait_readable(sock, PING_INTERVAL)
            with self._lock:
                if self._connection is not connection:
                    return
                if readable:
                    self._drain()
                self._keep_alive(connection)

    def _keep_alive(self, connection: Any) -> None:
        """PING after a silent interval; no PONG within the socket timeout is a loss."""
        now = time.monotonic()
        if self._ping_sent is None:
            if now - self._heard >= PING_INTERVAL:
                connection.send_command("PING")
                self._ping_sent = now
        elif now - self._ping_sent > max(self._timeout, PING_INTERVAL):
            raise TimeoutError(f"no PONG from {self._where} within {self._timeout} s")

    def _drain(self) -> None:
        """Read and apply every message already received (caller holds the lock)."""
        connection = self._connection
        if connection is None:
            return
        store = self._store
        while connection.can_read(0):
            message = connection.read_response()
            self._heard = time.monotonic()
            if isinstance(message, list) and message and message[0] == b"pong":
                self._ping_sent = None
                continue
            keys = invalidated_keys(message)
            if keys is None:
                store.flush()
            elif keys:
                store.invalidate(keys)

    def _lost(self) -> None:
        """The connection is gone or unusable (caller holds the lock)."""
        if self._session is not None or self._connection is not None:
            self._session = None
            # Invalidations sent from now on reach nobody: nothing cached may be served.
            self._store.flush()
        self._disconnect()

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        self._session = None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.disconnect()


def _after_fork_in_child() -> None:
    for channel in list(_CHANNELS):
        channel._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
