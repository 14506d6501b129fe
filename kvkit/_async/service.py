# SYNC-TEXT: "await client." -> "client."
"""The original system's eight ``RedisService`` methods, on every client.

``AsyncClient`` (and the generated ``Client``) inherit :class:`AsyncRedisServiceMixin`, so
code written against the hand-rolled ``RedisService`` keeps working::

    await client.cache_set("user:1", {"name": "Ada"}, expire=60)
    await client.session_set(session_id, {"user_id": 1})
    message_id = await client.queue_push("emails", {"to": "ada@example.com"})
    payload = await client.queue_pop("emails", timeout=5)

Every method is a thin adapter over the services (``client.cache``, ``client.sessions``,
``client.queue(name)``): validation, TTLs and encoding are theirs.

Legacy sessions
---------------
The original ``session_set`` wrote under an id chosen by the caller. The strict session
store (``client.sessions``) never does that: it only honours ids it created itself (256
random bits), which is what defeats session fixation. The two are kept apart:

* An id of the strict format (47 URL-safe characters, what ``client.sessions.create()``
  issues) is served by the strict store *alone*, by all three methods:
  ``session_set`` replaces the data of a live session and returns ``False`` (writing
  nothing) when the session is unknown, expired or logged out, so a strict id is never
  revived, not even as a legacy entry (a logged-out session stays logged out and a
  second ``delete_user`` still returns 0).
* Every other id is *upserted* by ``session_set`` in a separate namespace,
  ``{prefix}:session-legacy:{session_id}`` on the sessions role's backend, as one JSON
  object with the TTL ``expire`` (default: ``Settings.session_ttl``). Legacy entries
  expire ``expire`` seconds after the last ``session_set``, as in the original (reads do
  not extend them).
* On ``memory://?maxsize=N`` the legacy namespace lives in its own unbounded space: like
  all session data it is never evicted.
* Ids are bearer secrets: error messages name a session by :func:`kvkit._idhash.id_hash`
  (a short hash), never by its id.

Queues
------
``queue_push`` is :meth:`AsyncQueue.push`. ``queue_pop`` pops one message and acknowledges
it at once, returning its payload: an at-most-once convenience (a consumer that crashes
after ``queue_pop`` returned loses that message). Use ``client.queue(name).process()`` or
``consume()`` for at-least-once processing. A payload of ``None`` cannot be told apart
from "no message" here, exactly as in the original.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._errors import DecodeError, InvalidArgument, SerializationError
from .._idhash import id_hash
from .._keys import validate_key
from .._sessions_base import well_formed
from .._ttl import TTL, TTLResolver

if TYPE_CHECKING:
    from .._serde import Codec
    from .._settings import Settings
    from .backends.base import AsyncBackend, AsyncCacheDriver
    from .cache import AsyncCacheService
    from .queue import AsyncQueueService
    from .sessions import AsyncSessionService

__all__ = ["AsyncRedisServiceMixin"]

#: Key segment of the sessions written by the legacy ``session_set``.
LEGACY_SESSION_SEGMENT = "session-legacy"
# Queue objects kept per client for queue_push/queue_pop (each has its own consumer name
# on Redis; re-creating one per call would register a new consumer every time).
_MAX_QUEUES = 256


class AsyncRedisServiceMixin:
    """Implements :class:`AsyncRedisService` on top of a client's services.

    Mixed into :class:`kvkit.AsyncClient`; relies on its ``cache``, ``sessions``,
    ``queue()``, ``backend()``, ``settings`` and codec. See this module's docstring for
    how legacy session ids and ``queue_pop`` behave.
    """

    if TYPE_CHECKING:
        settings: Settings
        _codec: Codec

        @property
        def cache(self) -> AsyncCacheService: ...

        @property
        def sessions(self) -> AsyncSessionService: ...

        def queue(self, name: str, **options: Any) -> AsyncQueueService: ...

        def backend(self, role: str = "cache") -> AsyncBackend: ...

    # Created on first use (the client's constructor stays free of I/O and of this mixin).
    _legacy_sessions: tuple[AsyncCacheDriver, str] | None = None
    _service_queues: dict[str, AsyncQueueService] | None = None

    # -- cache ---------------------------------------------------------------------------------
    async def cache_set(self, key: str, value: Any, expire: TTL = None) -> bool:
        """Store ``value`` under ``key`` (``client.cache.set``).

        Args:
            key: The key.
            value: Any value the codec accepts.
            expire: TTL argument (seconds, ``timedelta``, ``"temp"``, ``kvkit.FOREVER``,
                …); ``None``: ``Settings.cache_ttl``.

        Returns:
            ``True`` once the value is stored; ``False`` when the backend failed and
            ``cache_fail_open`` dropped the write (it is logged and counted in
            ``client.cache.stats.errors``), as the original ``RedisService`` did.

        Raises:
            InvalidArgument: bad key or TTL.
            SerializationError: the value cannot be encoded (nothing is written).
            BackendError: the backend failed (unless ``cache_fail_open``).
        """
        return await self.cache._set(key, value, expire)

    async def cache_get(self, key: str) -> Any | None:
        """Return the value under ``key``, or ``None`` when missing (``client.cache.get``).

        Raises:
            InvalidArgument: bad key.
            DecodeError: the stored bytes cannot be decoded.
            BackendError: the backend failed (unless ``cache_fail_open``).
        """
        return await self.cache.get(key)

    async def cache_delete(self, key: str) -> bool:
        """Delete ``key``; return whether it existed (``client.cache.delete``).

        Raises:
            InvalidArgument: bad key.
            BackendError: the backend failed (unless ``cache_fail_open``).
        """
        return await self.cache.delete(key)

    # -- sessions ------------------------------------------------------------------------------
    async def session_set(
        self, session_id: str, data: Mapping[str, Any], expire: TTL = None
    ) -> bool:
        """Store ``data`` as the session ``session_id`` (legacy upsert, see the module docstring).

        An id of the strict format (as ``client.sessions.create()`` issues) replaces the data
        of that live session (and, with ``expire``, gives it that idle TTL); it is never
        created or revived. Any other id is upserted in the legacy namespace and expires
        ``expire`` after this call.

        Args:
            session_id: The caller's session id (a valid key).
            data: A mapping with ``str`` keys.
            expire: TTL argument; ``None``: ``Settings.session_ttl``.

        Returns:
            ``True`` once stored; ``False`` for a strict-format id whose session is unknown,
            expired or deleted (nothing is written).

        Raises:
            InvalidArgument: bad id, TTL, or ``data`` is not a mapping.
            SerializationError: a key is not a ``str`` or a value cannot be encoded
                (nothing is written).
            BackendError: the backend failed.
        """
        validate_key(session_id, "session id")
        if not isinstance(data, Mapping):
            raise InvalidArgument(f"session data must be a Mapping, not {type(data).__name__!r}")
        for name in data:
            if not isinstance(name, str):
                raise SerializationError(
                    f"session data keys must be str, not {type(name).__name__!r}"
                )
        settings = self.settings
        # Validate the TTL before anything is written, whichever store takes the data.
        ttl_ms = TTLResolver(settings.session_ttl, settings.temp_ttl, settings.long_ttl).ms(expire)
        if self._issued_id(session_id):
            # The strict store alone: an id it no longer knows (expired, logged out) must
            # stay dead, so this never falls back to creating a legacy entry.
            if not await self.sessions.set(session_id, data):
                return False
            if expire is not None:
                await self.sessions.touch(session_id, expire)
            return True
        raw = self._codec.encode(_legacy_label(session_id), dict(data))
        driver, prefix = self._legacy_store()
        await driver.set(prefix + session_id, raw, ttl_ms)
        return True

    async def session_get(self, session_id: str) -> dict[str, Any] | None:
        """Return the data of the session ``session_id``, or ``None``.

        Ids of the strict format are read from the strict store only (which slides their
        idle TTL); other ids from the legacy namespace.

        Raises:
            InvalidArgument: bad id.
            DecodeError: the stored bytes cannot be decoded.
            BackendError: the backend failed.
        """
        validate_key(session_id, "session id")
        if self._issued_id(session_id):
            return await self.sessions.get(session_id)
        driver, prefix = self._legacy_store()
        raw = await driver.get(prefix + session_id)
        if raw is None:
            return None
        label = _legacy_label(session_id)
        value = self._codec.decode(label, raw)
        if not isinstance(value, dict):
            raise DecodeError(f"{label} does not hold a JSON object")
        return value

    async def session_delete(self, session_id: str) -> bool:
        """Delete the session ``session_id`` (strict or legacy); return whether it existed.

        Raises:
            InvalidArgument: bad id.
            BackendError: the backend failed.
        """
        validate_key(session_id, "session id")
        if self._issued_id(session_id):
            return await self.sessions.delete(session_id)
        driver, prefix = self._legacy_store()
        return await driver.delete(prefix + session_id)

    def _issued_id(self, session_id: str) -> bool:
        """Whether ``session_id`` has the format of ids issued by ``client.sessions``."""
        # The store's own check, so that this never drifts from the id format.
        return well_formed(session_id)

    def _legacy_store(self) -> tuple[AsyncCacheDriver, str]:
        """The driver and key prefix of legacy sessions.

        Not a cache view: a cache view names the key -- here the secret id -- in its errors,
        and with ``cache_fail_open`` it turns backend errors into misses; sessions never
        fail open.
        """
        store = self._legacy_sessions
        if store is None:
            prefix = f"{self.settings.prefix}:{LEGACY_SESSION_SEGMENT}:"
            # Session data must never be evicted, even from a size-bounded memory:// cache.
            driver = self.backend("sessions").unbounded_cache_driver(LEGACY_SESSION_SEGMENT)
            store = self._legacy_sessions = (driver, prefix)
        return store

    # -- queues ----------------------------------------------------------------------------------
    async def queue_push(self, queue_name: str, data: Any) -> str:
        """Enqueue ``data`` on the queue ``queue_name``; return the message id.

        Raises:
            InvalidArgument: bad queue name.
            SerializationError: ``data`` cannot be encoded (nothing is enqueued).
            BackendError: the backend failed.
        """
        return await self._service_queue(queue_name).push(data)

    async def queue_pop(self, queue_name: str, timeout: float | None = 0) -> Any | None:
        """Pop one message from ``queue_name``, acknowledge it and return its payload.

        At-most-once: the message is acknowledged before it is returned. For
        at-least-once processing use ``client.queue(name).process()`` or ``consume()``.

        Args:
            queue_name: The queue.
            timeout: 0 (default): do not wait; N: wait up to N seconds; ``None``: wait
                until a message arrives.

        Returns:
            The payload, or ``None`` when no message arrived in time.

        Raises:
            InvalidArgument: bad queue name or timeout.
            BackendError: the backend failed.
        """
        queue = self._service_queue(queue_name)
        message = await queue.pop(timeout)
        if message is None:
            return None
        await queue.ack(message)
        return message.payload

    def _service_queue(self, name: str) -> AsyncQueueService:
        queues = self._service_queues
        if queues is None:
            queues = self._service_queues = {}
        queue = queues.get(name)
        if queue is None:
            queue = self.queue(name)  # validates the name
            if len(queues) >= _MAX_QUEUES:
                queues.clear()  # a bound, not an LRU: names come from code, not from users
            queue = queues.setdefault(name, queue)
        return queue


def _legacy_label(session_id: str) -> str:
    """How messages name a legacy session: by a hash, never by its (secret) id."""
    return f"legacy session {id_hash(session_id)}"
