"""One value per event loop: loop-bound resources (connection pools, gates) of a backend.

asyncio connections and primitives belong to the loop that created them, so an async
backend used from several loops -- one after another (pytest-asyncio gives each test its
own) or *at the same time* (threads each running ``asyncio.run`` against one client) --
needs one pool per loop. Values of loops that have been closed are dropped (their sockets
closed) the next time a new loop arrives, so a long run of short-lived loops does not pile
up pools. The sync code uses the same registry with the single key ``None`` (sync
resources are not bound to a loop).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["LoopLocal", "release_elsewhere"]

_T = TypeVar("_T")


def _closed(loop: object) -> bool:
    # ``None`` (the sync key) is never closed; an event loop says so itself.
    is_closed = getattr(loop, "is_closed", None)
    return bool(is_closed()) if is_closed is not None else False


def _running(loop: object) -> bool:
    is_running = getattr(loop, "is_running", None)
    return bool(is_running()) if is_running is not None else False


class LoopLocal(Generic[_T]):
    """A lazily created value per event loop.

    Args:
        factory: Creates the value for a new loop (no I/O: it runs under a lock).
        drop: Releases the value of a loop that was closed (no awaiting possible).
    """

    __slots__ = ("_current", "_drop", "_factory", "_lock", "_values")

    def __init__(self, factory: Callable[[], _T], drop: Callable[[_T], None]) -> None:
        self._factory = factory
        self._drop = drop
        self._lock = threading.Lock()
        self._values: dict[object, _T] = {}
        # The last (loop, value) handed out: one tuple, read and replaced atomically, so
        # the common case (same loop as last time) costs no lock and no dict lookup.
        self._current: tuple[object, _T] | None = None

    def get(self, loop: object) -> _T:
        """Return the value of ``loop``, creating it (and dropping closed loops') if new."""
        current = self._current
        if current is not None and current[0] is loop:
            return current[1]
        with self._lock:
            try:
                value = self._values[loop]
            except KeyError:
                self._prune()
                value = self._values[loop] = self._factory()
            self._current = (loop, value)
            return value

    def _prune(self) -> None:
        """Drop the values of closed loops (caller holds the lock)."""
        for loop in [loop for loop in self._values if _closed(loop)]:
            self._drop(self._values.pop(loop))
        if self._current is not None and self._current[0] not in self._values:
            self._current = None

    def take_idle(self, here: object) -> list[tuple[object, _T]]:
        """Remove and return the values of ``here`` and of every loop that is not running.

        The values of loops running elsewhere (in other threads) stay: their connections
        may be in use right now, and only their own loop can close them safely.
        """
        with self._lock:
            items = [
                (loop, value)
                for loop, value in self._values.items()
                if loop is here or not _running(loop)
            ]
            for loop, _ in items:
                del self._values[loop]
            self._current = None
            return items

    def take_all(self) -> list[tuple[object, _T]]:
        """Remove and return every ``(loop, value)``; the caller releases them."""
        with self._lock:
            items = list(self._values.items())
            self._values.clear()
            self._current = None
            return items

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)


def release_elsewhere(loop: object, drop: Callable[[_T], None], value: _T) -> None:
    """Release ``value`` of another event loop without awaiting on it.

    A loop that is running (in another thread) gets the release scheduled on itself, so
    its transports are never touched from a foreign thread; a loop that is stopped or
    closed cannot run anything any more, so the value is released here.
    """
    if _running(loop):
        try:
            loop.call_soon_threadsafe(drop, value)  # type: ignore[attr-defined]
            return
        except RuntimeError:  # closed in the meantime: nothing runs there any more
            pass
    drop(value)
