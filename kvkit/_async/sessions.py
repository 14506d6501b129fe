"""Server-side sessions: id rules, expiry policy, key names and codec.

Session ids
-----------
An id is 47 URL-safe characters (``[A-Za-z0-9_-]``): a 4-character *slot tag* followed
by a 43-character secret, ``secrets.token_urlsafe(32)``, i.e. 256 bits from the OS
CSPRNG. The store only ever honours ids it created itself: nothing writes under an id
chosen by the caller, and ``get``/``set``/``update``/``touch``/``rotate`` on an unknown,
expired or malformed id return ``None``/``False`` without creating anything. A ``str``
that is not a well-formed id is rejected before any I/O (``None``/``False``, never an
exception); a non-``str`` id is a programming error and raises
:class:`~kvkit.InvalidArgument`.

The slot tag is random for a session without a user. For a session created with a
``user_id`` it is derived from the user id (the first 4 characters of the URL-safe
base64 SHA-256 of it), so that all of one user's sessions and the user's index share one
Redis Cluster hash slot (below). It is not secret: two ids that start alike probably
belong to one user, but the 256-bit secret part is independent for every id.
``rotate`` keeps the tag and draws a new secret.

Expiry
------
* Idle TTL: ``Settings.session_ttl`` (or the ``ttl=`` of :meth:`create`, or the last
  ``ttl=`` given to :meth:`touch`, which becomes the session's idle TTL from then on).
  It restarts on every successful ``get``, ``set``, ``update``, ``touch`` and ``rotate``;
  ``exists``, ``ttl`` and ``user_sessions`` do not extend a session.
* Each session also records when it was created and when it was last used (each call
  that restarts the idle TTL), on the server's clock on Redis, plus the optional ``meta``
  given to :meth:`create`: ``user_sessions(user_id, details=True)`` lists them as
  :class:`kvkit.SessionInfo` for a "your devices" page. ``rotate`` keeps both the
  creation time and ``meta``. Sessions stored by kvkit 0.1, which recorded neither time,
  still read: the first use records both (so their ``created`` is that first use), and
  until then ``details`` estimates the last use from the remaining idle TTL.
* Absolute lifetime: ``Settings.session_max_age``. The store records the session's
  deadline at creation and never lets the key outlive it, however active the session
  is: the key's expiry is always ``min(now + idle TTL, deadline)``. ``rotate`` carries the
  deadline over, so rotating never extends a session's life.
* TTL arguments take every form the cache accepts (seconds, ``timedelta``, ``"default"``,
  ``"temp"``, ``"long"``, ``kvkit.FOREVER``). ``FOREVER`` means *no idle expiry*; when
  ``session_max_age`` is set the absolute deadline still applies (it is the store's
  security policy, not something a call site can opt out of).

Values
------
``data`` must be a ``Mapping`` with ``str`` keys (otherwise :class:`~kvkit.InvalidArgument`
for a non-mapping, :class:`~kvkit.SerializationError` for a non-``str`` key or an
unencodable value; nothing is written). Each top-level item is encoded on its own with the
client's codec, so ``datetime``, ``UUID`` and the other tagged types round-trip. Every read
decodes fresh objects: mutating a returned dict never changes the store.

Keys
----
The service builds every key; drivers treat them as opaque. With the default prefix
``kvkit`` (``P`` = ``kvkit:session:``)::

    P{TAG}SECRET          one session (the id is TAG + SECRET)
    P{TAG}user:USER_ID    the user's index of sessions, TAG = tag of USER_ID

Because the tag is in braces, a session key, its rotated successor and its user's index
are always in one Redis Cluster hash slot, so a driver can change them together in one
step. How the Redis driver stores a session and an index (hash fields, scores, scripts)
is described in :mod:`kvkit._async.backends.redis_sessions`.

Atomicity
---------
Every operation is one atomic call of the session driver
(:class:`~kvkit._async.backends.base.AsyncSessionDriver`): concurrent ``update`` calls
that change different fields all survive, and an unknown id is never created; after
``rotate`` the old id is invalid the instant the new one is valid; ``delete_user``
deletes every session of the user and the index at once, so a concurrent ``create`` for
that user is either deleted too or starts after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, overload

from .._errors import DecodeError
from .._idhash import named_decode_error
from .._serde import Codec
from .._sessions_base import (
    SessionInfo,
    SessionKeys,
    decode_data,
    encode_data,
    encode_meta,
    session_info,
    update_args,
)
from .._ttl import TTL, TTLResolver, remaining_seconds, seconds_to_ms
from .backends.base import AsyncSessionDriver
from .metered import metered

__all__ = ["AsyncSessionService"]


@metered(
    "sessions",
    *("create", "get", "set", "update", "delete", "touch", "rotate", "ttl", "exists"),
    *("user_sessions", "delete_user"),
)
class AsyncSessionService:
    """The session store of a client. Implements :class:`kvkit.AsyncSessionStore`.

    Obtain it from ``client.sessions``; do not construct it directly. See this module's
    docstring for the id format, expiry rules and key names.

    Args:
        driver: The backend's session driver.
        prefix: Key prefix of every session key (e.g. ``"kvkit:session:"``).
        ttl: Default idle TTL in seconds (``Settings.session_ttl``).
        max_age: Absolute lifetime in seconds (``Settings.session_max_age``), or ``None``.
        codec: The client's value codec.
        where: Redacted URL of the backend, for messages.
        temp_ttl: The ``"temp"`` TTL preset in seconds (``Settings.temp_ttl``).
        long_ttl: The ``"long"`` TTL preset in seconds (``Settings.long_ttl``).
    """

    def __init__(
        self,
        driver: AsyncSessionDriver,
        *,
        prefix: str,
        ttl: float,
        max_age: float | None,
        codec: Codec,
        where: str,
        temp_ttl: float = 300,
        long_ttl: float = 604800,
    ) -> None:
        self._driver = driver
        self._keys = SessionKeys(prefix)
        self._ttl = TTLResolver(ttl, temp_ttl, long_ttl)
        self._max_age_ms = None if max_age is None else seconds_to_ms(max_age, "session_max_age")
        self._codec = codec
        self._where = where

    def __repr__(self) -> str:
        return f"<kvkit sessions {self._keys.prefix!r} on {self._where}>"

    @property
    def prefix(self) -> str:
        """The key prefix of every session key (e.g. ``"kvkit:session:"``)."""
        return self._keys.prefix

    @property
    def codec(self) -> Codec:
        """The codec that encodes each top-level item of session data."""
        return self._codec

    # -- API -------------------------------------------------------------------------------
    async def create(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        ttl: TTL = None,
        user_id: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> str:
        """Create a session and return its new id.

        Args:
            data: The initial data (``None``: empty).
            ttl: Idle TTL of this session (``None``: ``session_ttl``; ``FOREVER``: no idle
                expiry, the absolute lifetime still applies).
            user_id: Owner, for :meth:`user_sessions` and :meth:`delete_user`.
            meta: What to show about this session on a "your devices" page (e.g.
                ``{"device": "Firefox on Linux", "ip": "203.0.113.7"}``): a mapping
                with ``str`` keys, kept for the session's life (``rotate`` keeps it) and
                returned by ``user_sessions(user_id, details=True)``; never part of
                the data ``get`` returns.

        Returns:
            The new id: 47 URL-safe characters carrying 256 random bits.

        Raises:
            InvalidArgument: ``data`` or ``meta`` is not a mapping, or ``ttl``/``user_id``
                is invalid.
            SerializationError: a key of ``data`` or ``meta`` is not a ``str`` or a value
                cannot be encoded (nothing is written).
            BackendError: the backend failed.
        """
        fields = {} if data is None else encode_data(self._codec, data, "session data")
        encoded_meta = encode_meta(self._codec, meta)
        idle_ms = self._ttl.ms(ttl)
        index = None if user_id is None else self._keys.index(user_id)
        session_id, key = self._keys.new(user_id)
        await self._driver.create(key, fields, idle_ms, self._max_age_ms, index, encoded_meta)
        return session_id

    async def get(self, session_id: str) -> dict[str, Any] | None:
        """Return the session's data and restart its idle TTL; ``None`` if unknown.

        Raises:
            InvalidArgument: ``session_id`` is not a ``str``.
            DecodeError: stored bytes cannot be decoded.
            BackendError: the backend failed.
        """
        key = self._keys.key(session_id)
        if key is None:
            return None
        # try/except rather than a context manager: this is every request's path.
        try:
            return decode_data(self._codec, await self._driver.get(key))
        except DecodeError as exc:
            raise named_decode_error(session_id, exc) from exc

    async def set(self, session_id: str, data: Mapping[str, Any]) -> bool:
        """Replace the data of an existing session (and restart its idle TTL).

        Never creates a session: an unknown id returns ``False`` and writes nothing.

        Raises:
            InvalidArgument: ``session_id`` is not a ``str`` or ``data`` is not a mapping.
            SerializationError: ``data`` cannot be encoded (nothing is written).
            BackendError: the backend failed.
        """
        fields = encode_data(self._codec, data, "session data")
        key = self._keys.key(session_id)
        if key is None:
            return False
        return await self._driver.replace(key, fields)

    async def update(
        self,
        session_id: str,
        changes: Mapping[str, Any] | None = None,
        *,
        remove: Iterable[str] = (),
    ) -> dict[str, Any] | None:
        """Atomically set the items of ``changes`` and delete the names in ``remove``.

        Items not named are left as they are, so concurrent updates of different items
        all survive. Restarts the idle TTL. Never creates a session.

        Args:
            session_id: The session.
            changes: Items to set (``None``: none).
            remove: Names of items to delete (missing names are ignored).

        Returns:
            The session's data after the change, or ``None`` if the id is unknown.

        Raises:
            InvalidArgument: bad id type, ``changes`` is not a mapping, ``remove`` is a
                ``str`` or holds a non-``str``, or a name is in both.
            SerializationError: a value cannot be encoded (nothing is written).
            BackendError: the backend failed.
        """
        fields, removed = update_args(self._codec, changes, remove)
        key = self._keys.key(session_id)
        if key is None:
            return None
        try:
            return decode_data(self._codec, await self._driver.update(key, fields, removed))
        except DecodeError as exc:
            raise named_decode_error(session_id, exc) from exc

    async def delete(self, session_id: str) -> bool:
        """Delete the session; return whether it existed.

        Raises:
            InvalidArgument: ``session_id`` is not a ``str``.
            BackendError: the backend failed.
        """
        key = self._keys.key(session_id)
        if key is None:
            return False
        return await self._driver.delete(key)

    async def touch(self, session_id: str, ttl: TTL = None) -> bool:
        """Restart the idle TTL; return whether the session exists.

        Args:
            session_id: The session.
            ttl: ``None`` restarts the session's current idle TTL; any other TTL becomes
                the session's idle TTL from now on (``FOREVER``: no idle expiry). The
                absolute lifetime always applies.

        Raises:
            InvalidArgument: bad id type or TTL.
            BackendError: the backend failed.
        """
        idle_ms = None if ttl is None else self._ttl.ms(ttl)
        key = self._keys.key(session_id)
        if key is None:
            return False
        return await self._driver.touch(key, idle_ms, ttl is not None)

    async def rotate(self, session_id: str) -> str | None:
        """Move the session to a new id (same data, user and deadline) and slide.

        Call it when privileges change (login) to defeat session fixation: the old id
        is invalid the moment this returns, atomically with the move.

        Returns:
            The new id, or ``None`` if ``session_id`` is unknown.

        Raises:
            InvalidArgument: ``session_id`` is not a ``str``.
            BackendError: the backend failed.
        """
        key = self._keys.key(session_id)
        if key is None:
            return None
        new_id, new_key = self._keys.successor(session_id)
        if not await self._driver.rotate(key, new_key):
            return None
        return new_id

    async def ttl(self, session_id: str) -> float | None:
        """Remaining seconds; ``None`` if unknown; ``math.inf`` if it never expires.

        Raises:
            InvalidArgument: ``session_id`` is not a ``str``.
            BackendError: the backend failed.
        """
        key = self._keys.key(session_id)
        if key is None:
            return None
        return remaining_seconds(await self._driver.pttl(key))

    async def exists(self, session_id: str) -> bool:
        """Return whether the session is live, without extending it.

        Raises:
            InvalidArgument: ``session_id`` is not a ``str``.
            BackendError: the backend failed.
        """
        key = self._keys.key(session_id)
        if key is None:
            return False
        return await self._driver.exists(key)

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
        """Return the user's live sessions, without extending them.

        Args:
            user_id: The user.
            details: ``False``: the session ids, in no particular order. ``True``: a
                :class:`kvkit.SessionInfo` per session (hash of the id, creation time, last
                use, ``meta``; never the id itself), most recently used first — what a
                "your devices" page shows.

        Raises:
            InvalidArgument: ``user_id`` is not a valid key.
            BackendError: the backend failed.
        """
        index = self._keys.index(user_id)
        if not details:
            keys = await self._driver.members(index)
            return [sid for sid in map(self._keys.id_of, keys) if sid is not None]
        infos: list[SessionInfo] = []
        for record in await self._driver.details(index):
            sid = self._keys.id_of(record.key)
            if sid is not None:
                infos.append(session_info(self._codec, sid, record))
        infos.sort(key=lambda info: info.last_seen, reverse=True)
        return infos

    async def delete_user(self, user_id: str) -> int:
        """Delete every session of the user ("log out everywhere"); return how many.

        Raises:
            InvalidArgument: ``user_id`` is not a valid key.
            BackendError: the backend failed.
        """
        return await self._driver.delete_members(self._keys.index(user_id))
