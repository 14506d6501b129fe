"""The in-process lock space: the memory engine behind ``client.lock(name)``.

The same semantics as the Lua scripts in ``kvkit/_resources/lua/lock/`` (see
:mod:`kvkit._lock_base`), on a monotonic clock: a lock is a stored ``token:owner`` value
with an expiry, and each lock name has a fencing counter that never expires. One mutex
guards the whole space and is held only for a few dictionary operations, so the async
backend can call it straight from the event loop. The space is never evicted, whatever the
cache's ``maxsize``.
"""

from __future__ import annotations

import threading
import time

from .._lock_base import lock_value

__all__ = ["LockSpace"]

monotonic = time.monotonic


class LockSpace:
    """Locks keyed by full lock key, fencing counters keyed by full counter key.

    Keys are opaque here: the lock service decides the layout. Times are milliseconds.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._held: dict[str, tuple[bytes, float]] = {}  # key -> (value, expires at)
        self._counters: dict[str, int] = {}

    def _live(self, key: str, now: float) -> tuple[bytes, float] | None:
        """The entry of ``key`` unless it expired (caller holds the mutex)."""
        entry = self._held.get(key)
        if entry is not None and entry[1] <= now:
            del self._held[key]
            return None
        return entry

    def acquire(self, key: str, fence: str, owner: str, ttl_ms: int) -> tuple[int, int]:
        """``(token, 0)`` if ``owner`` holds ``key`` now, else ``(0, holder's pttl ms)``."""
        with self.lock:
            now = monotonic()
            entry = self._live(key, now)
            if entry is not None:
                token_text, _, holder = entry[0].decode().partition(":")
                if holder == owner:  # a repeated call of the same acquisition
                    self._held[key] = (entry[0], now + ttl_ms / 1000.0)
                    return int(token_text), 0
                return 0, _pttl(entry[1], now)
            token = self._counters.get(fence, 0) + 1
            self._counters[fence] = token
            self._held[key] = (lock_value(token, owner), now + ttl_ms / 1000.0)
            return token, 0

    def release(self, key: str, owner: str, token: int | None) -> bool:
        """Delete ``key`` if ``owner`` (with ``token``, unless ``None``) holds it."""
        with self.lock:
            entry = self._live(key, monotonic())
            if entry is None or not _owned(entry[0], owner, token):
                return False
            del self._held[key]
            return True

    def extend(self, key: str, owner: str, token: int, ttl_ms: int) -> bool:
        """Make ``key`` expire ``ttl_ms`` from now if ``owner`` and ``token`` hold it."""
        with self.lock:
            now = monotonic()
            entry = self._live(key, now)
            if entry is None or not _owned(entry[0], owner, token):
                return False
            self._held[key] = (entry[0], now + ttl_ms / 1000.0)
            return True

    def exists(self, key: str) -> bool:
        """Whether anyone holds ``key``."""
        with self.lock:
            return self._live(key, monotonic()) is not None

    def held(self, prefix: str) -> list[tuple[str, bytes, int]]:
        """``(key, value, pttl ms)`` of every live lock whose key starts with ``prefix``."""
        with self.lock:
            now = monotonic()
            out = []
            for key in [k for k in self._held if k.startswith(prefix)]:
                entry = self._live(key, now)
                if entry is not None:
                    out.append((key, entry[0], _pttl(entry[1], now)))
            return out


def _owned(value: bytes, owner: str, token: int | None) -> bool:
    if token is not None:
        return value == lock_value(token, owner)
    return value.decode().partition(":")[2] == owner


def _pttl(expires: float, now: float) -> int:
    return max(1, round((expires - now) * 1000))
