"""The in-process session space: the memory engine behind ``client.sessions``.

Same semantics as the Redis driver (see :mod:`kvkit._async.sessions`), on a monotonic
clock: every session has an idle TTL that slides on use and an optional absolute deadline
that nothing extends; each user id has an index of its sessions. Creation and last-use
times (for ``details``) are wall-clock milliseconds, like the Redis server's. One lock
guards the whole space and is held only for a few dictionary operations, so the async
backend can call it straight from the event loop. The space stores the encoded bytes of
each data field and hands out fresh dicts, so callers can never mutate what is stored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from .._sessions_base import SessionRecord
from .engine import compact

__all__ = ["SessionSpace"]

# Every this many writes, expired sessions are swept so that sessions nobody reads again
# do not pile up (as the cache space does; Redis has its active expiry cycle).
_SWEEP_EVERY = 1024

monotonic = time.monotonic
wall = time.time


def _compacted(fields: dict[str, bytes]) -> dict[str, bytes]:
    """A copy of ``fields`` whose values sit in right-sized buffers (see ``compact``)."""
    return {name: compact(value) for name, value in fields.items()}


class _Session:
    """One stored session (caller holds the space's lock)."""

    __slots__ = (
        "created_ms",
        "deadline",
        "expires",
        "fields",
        "idle_ms",
        "index",
        "meta",
        "seen_ms",
    )

    def __init__(
        self,
        fields: dict[str, bytes],
        idle_ms: int | None,
        deadline: float | None,
        index: str | None,
        meta: bytes | None,
    ) -> None:
        self.fields = fields
        self.idle_ms = idle_ms  # None: no idle expiry
        self.deadline = deadline  # monotonic absolute deadline, None: none
        self.expires: float | None = None  # monotonic, None: never
        self.index = index  # the owner's index key, None: no user
        self.meta = meta  # encoded metadata, None: none
        self.created_ms = self.seen_ms = int(wall() * 1000)  # wall clock, for details()


class SessionSpace:
    """Sessions keyed by full session key, and user indexes keyed by full index key.

    Keys are opaque here: the session service decides the layout. Times are milliseconds
    (``None``: no limit).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        # index key -> session keys (a dict as an insertion-ordered set)
        self._users: dict[str, dict[str, None]] = {}
        self._writes = 0

    # -- helpers (caller holds the lock) ---------------------------------------------------
    def _live(self, key: str, now: float) -> _Session | None:
        session = self._sessions.get(key)
        if session is not None and session.expires is not None and session.expires <= now:
            self._drop(key, session)
            return None
        return session

    def _drop(self, key: str, session: _Session) -> None:
        del self._sessions[key]
        if session.index is not None:
            members = self._users.get(session.index)
            if members is not None:
                members.pop(key, None)
                if not members:
                    del self._users[session.index]

    def _slide(self, key: str, session: _Session, now: float) -> bool:
        """Restart the idle TTL, capped by the deadline; False (and gone) when past it."""
        expires = None if session.idle_ms is None else now + session.idle_ms / 1000.0
        if session.deadline is not None:
            if session.deadline <= now:
                self._drop(key, session)
                return False
            if expires is None or session.deadline < expires:
                expires = session.deadline
        session.expires = expires
        session.seen_ms = int(wall() * 1000)
        return True

    def _wrote(self, now: float) -> None:
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            for key, session in list(self._sessions.items()):
                if session.expires is not None and session.expires <= now:
                    self._drop(key, session)

    # -- operations ---------------------------------------------------------------------------
    def create(
        self,
        key: str,
        fields: dict[str, bytes],
        idle_ms: int | None,
        max_age_ms: int | None,
        index: str | None,
        meta: bytes | None = None,
    ) -> None:
        """Store a new session (replacing any previous one under ``key``)."""
        with self.lock:
            now = monotonic()
            old = self._sessions.get(key)
            if old is not None:
                self._drop(key, old)
            deadline = None if max_age_ms is None else now + max_age_ms / 1000.0
            session = _Session(_compacted(fields), idle_ms, deadline, index, meta)
            self._sessions[key] = session
            if index is not None:
                self._users.setdefault(index, {})[key] = None
            self._slide(key, session, now)
            self._wrote(now)

    def get(self, key: str) -> dict[str, bytes] | None:
        """Return a copy of the session's fields and slide its TTL; ``None`` if missing."""
        with self.lock:
            now = monotonic()
            session = self._live(key, now)
            if session is None or not self._slide(key, session, now):
                return None
            return dict(session.fields)

    def replace(self, key: str, fields: dict[str, bytes]) -> bool:
        """Replace every data field and slide; return whether the session exists."""
        with self.lock:
            now = monotonic()
            session = self._live(key, now)
            if session is None or not self._slide(key, session, now):
                return False
            session.fields = _compacted(fields)
            self._wrote(now)
            return True

    def update(
        self, key: str, fields: dict[str, bytes], remove: Iterable[str]
    ) -> dict[str, bytes] | None:
        """Merge ``fields``, drop ``remove``, slide; return a copy of the new fields."""
        with self.lock:
            now = monotonic()
            session = self._live(key, now)
            if session is None or not self._slide(key, session, now):
                return None
            for name in remove:
                session.fields.pop(name, None)
            session.fields.update(_compacted(fields))
            self._wrote(now)
            return dict(session.fields)

    def delete(self, key: str) -> bool:
        """Delete the session; return whether it existed."""
        with self.lock:
            session = self._live(key, monotonic())
            if session is None:
                return False
            self._drop(key, session)
            return True

    def touch(self, key: str, idle_ms: int | None, change: bool) -> bool:
        """Slide the TTL (first making ``idle_ms`` the idle TTL when ``change``)."""
        with self.lock:
            now = monotonic()
            session = self._live(key, now)
            if session is None:
                return False
            if change:
                session.idle_ms = idle_ms
            return self._slide(key, session, now)

    def rotate(self, old: str, new: str) -> bool:
        """Move the session from ``old`` to ``new`` (and in its user index) and slide."""
        with self.lock:
            now = monotonic()
            if self._live(new, now) is not None:
                return True  # already moved (the same call, retried)
            session = self._live(old, now)
            if session is None:
                return False
            self._drop(old, session)
            self._sessions[new] = session
            if session.index is not None:
                self._users.setdefault(session.index, {})[new] = None
            return self._slide(new, session, now)

    def pttl(self, key: str) -> int | None:
        """Remaining ms, ``-1`` without expiry, ``None`` when missing (no sliding)."""
        with self.lock:
            now = monotonic()
            session = self._live(key, now)
            if session is None:
                return None
            if session.expires is None:
                return -1
            return max(1, round((session.expires - now) * 1000))

    def exists(self, key: str) -> bool:
        """Return whether the session is live (no sliding)."""
        with self.lock:
            return self._live(key, monotonic()) is not None

    def members(self, index: str) -> list[str]:
        """Return the keys of the live sessions in ``index`` (pruning the dead ones)."""
        with self.lock:
            now = monotonic()
            keys = list(self._users.get(index, ()))
            return [k for k in keys if self._live(k, now) is not None]

    def details(self, index: str) -> list[SessionRecord]:
        """Like :meth:`members`, with each session's creation, last use and metadata."""
        with self.lock:
            now = monotonic()
            out: list[SessionRecord] = []
            for key in list(self._users.get(index, ())):
                session = self._live(key, now)
                if session is not None:
                    out.append(
                        SessionRecord(key, session.created_ms, session.seen_ms, session.meta)
                    )
            return out

    def delete_members(self, index: str) -> int:
        """Delete every live session in ``index`` and the index; return how many."""
        with self.lock:
            now = monotonic()
            count = 0
            for key in list(self._users.get(index, ())):
                session = self._live(key, now)
                if session is not None:
                    self._drop(key, session)
                    count += 1
            self._users.pop(index, None)
            return count

    def __len__(self) -> int:
        with self.lock:
            now = monotonic()
            for key in list(self._sessions):
                self._live(key, now)
            return len(self._sessions)
