"""The near cache's store and its coherence bookkeeping (no I/O; sync and async share it).

A :class:`NearCache` holds raw values (bytes, as the driver returns them) under full keys,
bounded to ``maxsize`` entries (least recently used evicted first), each with a local
deadline no later than the key's expiry in Redis. It is filled only by *tracked* reads: a
read made on a connection that has Redis client tracking switched on, redirected to an
invalidation channel (``kvkit._near_channel``) that is subscribed and live. From then on
Redis tells the channel when the key changes, and the channel calls :meth:`invalidate`.

The race every client-side cache must close: a reply can be overtaken by the
invalidation of a write that happened after the read (they travel on different
connections). So a read first registers its keys (:meth:`begin`), which returns a ticket;
an invalidation of a registered key bumps that key's generation; and the reply is stored
(:meth:`finish`) only if no invalidation and no flush came in between. The store is
flushed (:meth:`flush`) whenever the channel is lost or re-established: invalidations sent
while it was down are gone, so nothing cached before may be served after.

All methods are thread-safe (one lock): the channel's thread invalidates while event
loops or request threads read.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["INVALIDATION_CHANNEL", "NearCache", "Ticket", "invalidated_keys"]

INVALIDATION_CHANNEL = "__redis__:invalidate"
"""The Pub/Sub channel Redis sends RESP2 invalidation messages on (``REDIRECT`` mode)."""

POLL_INTERVAL = 0.0005
"""Seconds between two looks at the invalidation socket from the read path itself.

The channel's thread reads invalidations as they arrive, but while the reading thread
keeps the interpreter busy (a tight loop of near-cache hits) that thread may wait for the
GIL for up to the interpreter's switch interval (5 ms). Looking from the read path too
bounds the delay by this interval instead.
"""


class Ticket:
    """A tracked read in flight: the epoch and key generations it started with."""

    __slots__ = ("epoch", "generations", "keys", "started")

    def __init__(self, epoch: int, keys: Sequence[str], generations: list[int], started: float):
        self.epoch = epoch
        self.keys = keys
        self.generations = generations
        self.started = started


class NearCache:
    """A bounded in-process LRU of raw cache values, kept coherent by invalidations.

    Args:
        maxsize: Most entries held (``>= 1``).
        clock: Monotonic seconds (tests pass a fake clock).
    """

    def __init__(self, maxsize: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.maxsize = maxsize
        self._clock = clock
        self._lock = threading.Lock()
        self._data: collections.OrderedDict[str, tuple[bytes, float]] = collections.OrderedDict()
        # key -> [reads in flight, generation]: only keys with a read in flight.
        self._pending: dict[str, list[int]] = {}
        self.epoch = 0
        """Bumped by every :meth:`flush`: tickets of an older epoch are never stored."""
        self.flushes = 0
        """How many times the store was flushed (channel lost or (re)established)."""
        self._poll: Callable[[], None] | None = None
        self._next_poll = 0.0

    def __len__(self) -> int:
        return len(self._data)

    def on_poll(self, poll: Callable[[], None] | None) -> None:
        """Set what the read path calls now and then to read pending invalidations."""
        self._poll = poll

    # -- reads ---------------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        """Return the cached value of ``key`` (``None``: not cached or expired)."""
        now = self._clock()
        poll = self._poll
        if poll is not None and now >= self._next_poll:
            self._next_poll = now + POLL_INTERVAL
            poll()
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            if entry[1] <= now:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return entry[0]

    def begin(self, keys: Sequence[str]) -> Ticket:
        """Register a tracked read of ``keys`` that is about to be sent."""
        with self._lock:
            generations = []
            pending = self._pending
            for key in keys:
                slot = pending.get(key)
                if slot is None:
                    slot = pending[key] = [0, 0]
                slot[0] += 1
                generations.append(slot[1])
            return Ticket(self.epoch, keys, generations, self._clock())

    def finish(self, ticket: Ticket, values: Sequence[bytes | None], pttls: Sequence[int]) -> None:
        """Store what a tracked read returned, unless an invalidation overtook it.

        Args:
            ticket: From :meth:`begin`.
            values: The values read (``None``: missing, not cached).
            pttls: Each key's ``PTTL`` read in the same round trip (``-1``: no expiry,
                ``-2``: missing). The local deadline counts from when the read was sent,
                so an entry never outlives its key.
        """
        with self._lock:
            valid = ticket.epoch == self.epoch
            data = self._data
            for key, generation, value, pttl in zip(
                ticket.keys, ticket.generations, values, pttls, strict=True
            ):
                slot = self._release(key)
                if not valid or slot[1] != generation or value is None or pttl == -2:
                    continue
                deadline = float("inf") if pttl < 0 else ticket.started + pttl / 1000.0
                data[key] = (value, deadline)
                data.move_to_end(key)
            while len(data) > self.maxsize:
                data.popitem(last=False)

    def abandon(self, ticket: Ticket) -> None:
        """Forget a tracked read that failed or was cancelled (nothing is stored)."""
        with self._lock:
            for key in ticket.keys:
                self._release(key)

    def _release(self, key: str) -> list[int]:
        slot = self._pending[key]
        slot[0] -= 1
        if slot[0] == 0:
            del self._pending[key]
        return slot

    # -- coherence -------------------------------------------------------------------------------
    def invalidate(self, keys: Iterable[str]) -> None:
        """Drop ``keys`` and void the tracked reads of them still in flight."""
        with self._lock:
            data = self._data
            pending = self._pending
            for key in keys:
                data.pop(key, None)
                slot = pending.get(key)
                if slot is not None:
                    slot[1] += 1

    def reset_after_fork(self) -> None:
        """In a forked child: new lock (another thread may have held it), nothing cached."""
        self._lock = threading.Lock()
        self._pending.clear()
        self.flush()

    def flush(self) -> None:
        """Drop everything and void every tracked read in flight."""
        with self._lock:
            self._data.clear()
            self.epoch += 1
            self.flushes += 1


def invalidated_keys(message: Any) -> list[str] | None:
    """The keys of one RESP2 invalidation message, ``[]`` if it is none, ``None``: all keys.

    Invalidation messages arrive as Pub/Sub messages on :data:`INVALIDATION_CHANNEL`:
    ``[b"message", b"__redis__:invalidate", [key, ...]]``, or with a null instead of the key
    list when the server flushed a database (every key is invalid then). Subscription
    confirmations and PING replies are not invalidations (``[]``).
    """
    if not isinstance(message, list) or len(message) != 3 or message[0] != b"message":
        return []
    keys = message[2]
    if keys is None:
        return None
    return [key.decode("utf-8", "surrogateescape") for key in keys]
