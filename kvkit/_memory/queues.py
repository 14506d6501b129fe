"""In-process queues: the memory engine behind ``memory://`` queues (sync and async alike).

Each queue mirrors what the Redis driver builds out of a stream and a consumer group, on a
monotonic clock:

* a *stream* of entries (``eid`` -> entry, in push order) plus an index ``id -> eid``;
* per consumer group, the entries not yet delivered to it (``ready``), the entries
  delivered and not yet acknowledged (``pel``, each with its consumer, delivery count and
  idle-since time), a heap of lease times, so that expired leases are found without
  scanning, and the expired ones by stream position, the order in which they are
  reclaimed: like XAUTOCLAIM with its cursor, a pop continues after the last lease the
  previous one reclaimed, and comes back to the ones behind it in the next round;
* a heap of delayed messages, promoted into the stream when they are due;
* the dead-letter list and the dedupe records.

Every operation holds the queue's lock for a few dictionary/heap operations only, so the
async backend calls it straight from the event loop. Blocking pops do not poll: waiters
sleep on the queue's :class:`~kvkit._compat.Notifier` (a condition variable for threads,
futures woken with ``call_soon_threadsafe`` for event loops) until a push, a give-back or
the next due time (delayed message or lease expiry) that the engine computes exactly.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque

from .._compat import Notifier
from .._queue_base import RATE_BUCKET_MS, RATE_BUCKETS
from .._queue_types import RawMessage
from .engine import compact

__all__ = ["MemoryQueue", "QueueSpace"]

monotonic = time.monotonic
# Expired dedupe records are swept every this many dedupe checks.
_SWEEP_EVERY = 256


def _wall_ms() -> int:
    return int(time.time() * 1000)


class _Entry:
    """One message in the stream."""

    __slots__ = ("eid", "enqueued_ms", "id", "needs", "payload", "prior", "since")

    def __init__(
        self,
        eid: int,
        id: str,
        payload: bytes,
        enqueued_ms: int,
        prior: int,
        needs: set[str],
        since: float,
    ) -> None:
        self.eid = eid
        self.id = id
        self.payload = payload
        self.enqueued_ms = enqueued_ms
        self.prior = prior  # deliveries before this entry existed (nack/redelay)
        self.needs = needs  # groups that have not acknowledged it yet
        self.since = since  # when this entry became ready (monotonic): its ready age


class _Lease:
    """One delivered, unacknowledged entry of a group (a Redis PEL entry)."""

    __slots__ = ("consumer", "count", "since", "stamp")

    def __init__(self, consumer: str, since: float, count: int, stamp: int) -> None:
        self.consumer = consumer
        self.since = since  # idle since (monotonic); the lease expires `visibility` later
        self.count = count  # deliveries of this entry (Redis' delivery counter)
        self.stamp = stamp  # identifies the live heap item of this lease


class _Group:
    """A consumer group: what it has not seen yet, and what it holds."""

    __slots__ = ("ahead", "behind", "cursor", "expiry", "pel", "ready", "seen")

    def __init__(self, ready: deque[int]) -> None:
        self.ready = ready
        self.pel: dict[int, _Lease] = {}
        self.expiry: list[tuple[float, int, int]] = []  # (since, stamp, eid); lazy deletes
        # Expired leases as (eid, stamp) heaps, lazy deletes too: after the reclaim cursor
        # (this round) and up to it (the next round).
        self.cursor = 0
        self.ahead: list[tuple[int, int]] = []
        self.behind: list[tuple[int, int]] = []
        self.seen: dict[str, float] = {}  # consumer -> last pop (monotonic)


class _Delayed:
    __slots__ = ("enqueued_ms", "id", "payload", "prior")

    def __init__(self, id: str, payload: bytes, enqueued_ms: int, prior: int) -> None:
        self.id = id
        self.payload = payload
        self.enqueued_ms = enqueued_ms
        self.prior = prior


class _Dead:
    __slots__ = ("dead_ms", "deliveries", "enqueued_ms", "group", "id", "payload", "reason")

    def __init__(
        self,
        id: str,
        payload: bytes,
        enqueued_ms: int,
        deliveries: int,
        reason: str,
        group: str,
    ) -> None:
        self.id = id
        self.payload = payload
        self.enqueued_ms = enqueued_ms
        self.deliveries = deliveries
        self.reason = reason
        self.group = group
        self.dead_ms = _wall_ms()


class MemoryQueue:
    """One queue of a memory store. Thread-safe; never blocks except in the waits."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.notifier = Notifier()
        self._entries: dict[int, _Entry] = {}
        self._index: dict[str, int] = {}
        self._groups: dict[str, _Group] = {}
        self._delayed: list[tuple[float, int, _Delayed]] = []
        self._dead: dict[int, _Dead] = {}
        self._dedupe: dict[str, tuple[str, float]] = {}
        self._eids = itertools.count(1)
        self._seq = itertools.count(1)
        self._dedupe_checks = 0
        # Throughput: bucket number -> [pushed, acknowledged], the last RATE_BUCKETS only.
        self._rates: dict[int, list[int]] = {}

    # -- helpers (caller holds the lock) ------------------------------------------------------
    def _add(self, id: str, payload: bytes, enqueued_ms: int, prior: int, since: float) -> None:
        eid = next(self._eids)
        self._entries[eid] = _Entry(eid, id, payload, enqueued_ms, prior, set(self._groups), since)
        self._index[id] = eid
        for group in self._groups.values():
            group.ready.append(eid)

    def _trim(self, maxlen: int | None) -> None:
        # Like XADD MAXLEN: the oldest entries go, whether delivered or not; a leased one
        # is no longer leased (as after a purge), like the Redis driver's trim.
        if maxlen is None:
            return
        while len(self._entries) > maxlen:
            eid = next(iter(self._entries))
            self._drop(eid)
            for group in self._groups.values():
                group.pel.pop(eid, None)

    def _drop(self, eid: int) -> None:
        entry = self._entries.pop(eid)
        if self._index.get(entry.id) == eid:
            del self._index[entry.id]

    def _done(self, group: str, eid: int) -> None:
        """``group`` is finished with ``eid``: delete it once no group needs it."""
        entry = self._entries.get(eid)
        if entry is None:
            return
        entry.needs.discard(group)
        if not entry.needs:
            self._drop(eid)

    def _promote(self, now: float) -> bool:
        delayed = self._delayed
        promoted = False
        while delayed and delayed[0][0] <= now:
            _, _, item = heapq.heappop(delayed)
            self._add(item.id, item.payload, item.enqueued_ms, item.prior, now)
            promoted = True
        return promoted

    def _group(self, name: str) -> _Group:
        group = self._groups.get(name)
        if group is None:
            # Like XGROUP CREATE ... 0: a new group starts with everything in the stream.
            group = self._groups[name] = _Group(deque(self._entries))
            for entry in self._entries.values():
                entry.needs.add(name)
        return group

    def _resolve(self, id: str, receipt: str | None) -> int | None:
        if receipt is None:
            return self._index.get(id)
        try:
            return int(receipt)
        except ValueError:
            return None

    def _lease(self, group: _Group, eid: int, consumer: str, since: float, count: int) -> _Lease:
        stamp = next(self._seq)
        lease = _Lease(consumer, since, count, stamp)
        group.pel[eid] = lease
        heapq.heappush(group.expiry, (since, stamp, eid))
        return lease

    @staticmethod
    def _clean_expiry(group: _Group) -> None:
        expiry, pel = group.expiry, group.pel
        while expiry:
            _, stamp, eid = expiry[0]
            lease = pel.get(eid)
            if lease is not None and lease.stamp == stamp:
                return
            heapq.heappop(expiry)

    def _tally(self, column: int, count: int) -> None:
        """Count ``count`` messages pushed (column 0) or acknowledged (1) in this bucket."""
        bucket = _wall_ms() // RATE_BUCKET_MS
        row = self._rates.get(bucket)
        if row is None:
            row = self._rates[bucket] = [0, 0]
            for old in [b for b in self._rates if b <= bucket - RATE_BUCKETS]:
                del self._rates[old]
        row[column] += count

    def _bury(self, group: str, entry: _Entry, deliveries: int, reason: str) -> None:
        self._dead[next(self._seq)] = _Dead(
            entry.id, entry.payload, entry.enqueued_ms, deliveries, reason, group
        )
        self._done(group, entry.eid)

    # -- producing ----------------------------------------------------------------------------
    def push(
        self,
        items: list[tuple[str, bytes]],
        delay_ms: int,
        dedupe: str | None,
        dedupe_ms: int,
        maxlen: int | None,
    ) -> str | None:
        """Add messages (after ``delay_ms``); return the original id on a dedupe hit."""
        with self.lock:
            now = monotonic()
            if dedupe is not None:
                hit = self._dedupe.get(dedupe)
                if hit is not None and hit[1] > now:
                    return hit[0]
                self._dedupe[dedupe] = (items[0][0], now + dedupe_ms / 1000.0)
                self._dedupe_checks += 1
                if self._dedupe_checks % _SWEEP_EVERY == 0:
                    for key in [k for k, (_, exp) in self._dedupe.items() if exp <= now]:
                        del self._dedupe[key]
            enqueued = _wall_ms()
            if delay_ms > 0:
                due = now + delay_ms / 1000.0
                for id, payload in items:
                    heapq.heappush(
                        self._delayed,
                        (due, next(self._seq), _Delayed(id, compact(payload), enqueued, 0)),
                    )
            else:
                for id, payload in items:
                    self._add(id, compact(payload), enqueued, 0, now)
                self._trim(maxlen)
            self._tally(0, len(items))
        # Delayed pushes wake waiters too: they must shorten their wait to the due time.
        self.notifier.notify()
        return None

    # -- consuming ----------------------------------------------------------------------------
    def pop(
        self,
        group: str,
        consumer: str,
        count: int,
        visibility_ms: int,
        max_deliveries: int,
        maxlen: int | None,
    ) -> tuple[list[RawMessage], float | None, int]:
        """Lease up to ``count`` messages: expired leases first, then new entries.

        Expired leases are taken in stream order, at most ``count`` of them: those over
        ``max_deliveries`` are dead-lettered, the others delivered; the room left is
        filled with new entries (the Redis driver's rule, see ``_RECLAIM`` there).

        Returns:
            ``(messages, wait_hint, version)``: when nothing was found, ``wait_hint`` is how
            many seconds until something may become available by itself (a delayed
            message due, a lease expiring; ``None``: nothing scheduled), and ``version``
            the notifier version to wait on.
        """
        out: list[RawMessage] = []
        with self.lock:
            version = self.notifier.version
            now = monotonic()
            promoted = self._promote(now)
            if promoted:
                self._trim(maxlen)
            grp = self._group(group)
            entries, pel = self._entries, grp.pel
            # 1. Reclaim leases idle for longer than the visibility timeout: move them from
            # the lease-time heap to the stream-position heaps, then take them from there.
            horizon = now - visibility_ms / 1000.0
            expiry = grp.expiry
            while expiry and expiry[0][0] <= horizon:
                _, stamp, eid = heapq.heappop(expiry)
                lease = pel.get(eid)
                if lease is not None and lease.stamp == stamp:
                    heapq.heappush(grp.ahead if eid > grp.cursor else grp.behind, (eid, stamp))
            budget = count
            later: list[tuple[float, int, int]] = []
            while budget:
                if not grp.ahead:
                    if not grp.behind:
                        grp.cursor = 0
                        break
                    # This round is over: the next one starts from the beginning.
                    grp.cursor, grp.ahead, grp.behind = 0, grp.behind, grp.ahead
                eid, stamp = heapq.heappop(grp.ahead)
                lease = pel.get(eid)
                if lease is None or lease.stamp != stamp:
                    continue  # acknowledged or renewed since: a stale heap item
                if lease.since > horizon:
                    # Moved here by a pop with a shorter visibility timeout than ours.
                    later.append((lease.since, stamp, eid))
                    continue
                entry = entries.get(eid)
                if entry is None:  # trimmed away (XAUTOCLAIM drops those too)
                    del pel[eid]
                    continue
                budget -= 1
                grp.cursor = eid
                count_now = lease.count + 1
                if entry.prior + count_now > max_deliveries:
                    del pel[eid]
                    reason = f"max_deliveries ({max_deliveries}) exceeded"
                    self._bury(group, entry, entry.prior + lease.count, reason)
                    continue
                lease = self._lease(grp, eid, consumer, now, count_now)
                out.append(
                    RawMessage(
                        str(eid),
                        entry.id,
                        entry.payload,
                        entry.enqueued_ms,
                        entry.prior + count_now,
                        count_now,
                    )
                )
            # 2. New entries.
            ready = grp.ready
            while len(out) < count and ready:
                eid = ready.popleft()
                entry = entries.get(eid)
                if entry is None:
                    continue
                self._lease(grp, eid, consumer, now, 1)
                out.append(
                    RawMessage(
                        str(eid), entry.id, entry.payload, entry.enqueued_ms, entry.prior + 1, 1
                    )
                )
            # Like Redis, a consumer joins the group when it first receives something, and
            # every later attempt counts as activity.
            if out or consumer in grp.seen:
                grp.seen[consumer] = now
            for item in later:
                heapq.heappush(expiry, item)
            hint: float | None = None
            if not out and not budget and (grp.ahead or grp.behind):
                hint = 0.0  # dead-lettered a full batch: more expired leases may be left
            elif not out:
                self._clean_expiry(grp)
                if expiry:
                    hint = expiry[0][0] + visibility_ms / 1000.0 - now
                if self._delayed:
                    due = self._delayed[0][0] - now
                    hint = due if hint is None else min(hint, due)
                if hint is not None:
                    hint = max(0.0, hint)
        if promoted:
            self.notifier.notify()
        return out, hint, version

    def ack(self, group: str, items: list[tuple[str, str | None]]) -> int:
        """Acknowledge ``(id, receipt)`` pairs; return how many were leased."""
        with self.lock:
            grp = self._groups.get(group)
            if grp is None:
                return 0
            acked = 0
            for id, receipt in items:
                eid = self._resolve(id, receipt)
                if eid is None or grp.pel.pop(eid, None) is None:
                    continue
                acked += 1
                self._done(group, eid)
            if acked:
                self._tally(1, acked)
            return acked

    def nack(
        self,
        group: str,
        *,
        id: str,
        receipt: str | None,
        lease: int,
        delay_ms: int,
        max_deliveries: int,
        counted: bool,
        reason: str,
        maxlen: int | None,
    ) -> int:
        """Give a leased message back; return 0 (not leased), 1 (requeued) or 2 (dead)."""
        with self.lock:
            grp = self._groups.get(group)
            eid = self._resolve(id, receipt)
            if grp is None or eid is None:
                return 0
            held = grp.pel.get(eid)
            if held is None or (lease and held.count != lease):
                return 0
            del grp.pel[eid]
            entry = self._entries.get(eid)
            if entry is None:
                return 0
            prior = entry.prior + held.count - (0 if counted else 1)
            if counted and prior >= max_deliveries:
                self._bury(group, entry, prior, reason)
                return 2
            self._done(group, eid)
            if delay_ms > 0:
                due = monotonic() + delay_ms / 1000.0
                item = _Delayed(entry.id, entry.payload, entry.enqueued_ms, prior)
                heapq.heappush(self._delayed, (due, next(self._seq), item))
            else:
                self._add(entry.id, entry.payload, entry.enqueued_ms, prior, monotonic())
                self._trim(maxlen)
        self.notifier.notify()
        return 1

    def extend(self, group: str, id: str, receipt: str | None, lease: int, idle_ms: int) -> bool:
        """Renew a lease so that it is ``idle_ms`` old now; return whether it was held."""
        with self.lock:
            grp = self._groups.get(group)
            eid = self._resolve(id, receipt)
            if grp is None or eid is None:
                return False
            held = grp.pel.get(eid)
            if held is None or (lease and held.count != lease):
                return False
            if eid not in self._entries:
                del grp.pel[eid]
                return False
            self._lease(grp, eid, held.consumer, monotonic() - idle_ms / 1000.0, held.count)
            return True

    def dead_letter(self, group: str, receipt: str, reason: str) -> bool:
        """Move a leased entry (e.g. one that cannot be decoded) to the dead letters."""
        with self.lock:
            grp = self._groups.get(group)
            eid = self._resolve("", receipt)
            if grp is None or eid is None:
                return False
            held = grp.pel.pop(eid, None)
            entry = self._entries.get(eid)
            if held is None or entry is None:
                return False
            self._bury(group, entry, entry.prior + held.count, reason)
            return True

    # -- dead letters and housekeeping ---------------------------------------------------------
    def dead_letters(self, count: int) -> list[RawMessage]:
        """Return the ``count`` oldest dead letters."""
        with self.lock:
            return [
                RawMessage(str(seq), d.id, d.payload, d.enqueued_ms, d.deliveries, 0, d.reason)
                for seq, d in itertools.islice(self._dead.items(), count)
            ]

    def requeue_dead(self, ids: set[str] | None, maxlen: int | None) -> int:
        """Move dead letters (all, or those with the given ids) back, deliveries reset."""
        with self.lock:
            moved = 0
            now = monotonic()
            for seq, dead in list(self._dead.items()):
                if ids is None or dead.id in ids:
                    del self._dead[seq]
                    self._add(dead.id, dead.payload, dead.enqueued_ms, 0, now)
                    moved += 1
            if moved:
                self._trim(maxlen)
        if moved:
            self.notifier.notify()
        return moved

    def delete_dead(self, ids: set[str] | None) -> int:
        """Delete dead letters (all, or those with the given ids); return how many."""
        with self.lock:
            doomed = [seq for seq, d in self._dead.items() if ids is None or d.id in ids]
            for seq in doomed:
                del self._dead[seq]
            return len(doomed)

    def purge(self, dead: bool) -> int:
        """Delete every message (and the dead letters if ``dead``); return how many."""
        with self.lock:
            count = len(self._entries) + len(self._delayed)
            self._entries.clear()
            self._index.clear()
            self._delayed.clear()
            self._dedupe.clear()
            for group in self._groups.values():
                group.ready.clear()
                group.pel.clear()
                group.expiry.clear()
                group.ahead.clear()
                group.behind.clear()
                group.cursor = 0
                group.seen.clear()
            if dead:
                count += len(self._dead)
                self._dead.clear()
            return count

    def gc(self, group: str, idle_ms: int) -> None:
        """Forget consumers that hold nothing and were idle for ``idle_ms``."""
        with self.lock:
            grp = self._groups.get(group)
            if grp is not None:
                self._gc(grp, monotonic(), idle_ms)

    @staticmethod
    def _gc(group: _Group, now: float, idle_ms: int) -> None:
        holders = {lease.consumer for lease in group.pel.values()}
        limit = idle_ms / 1000.0
        for name in [n for n, seen in group.seen.items() if now - seen > limit]:
            if name not in holders:
                del group.seen[name]

    def stats(
        self, group: str, consumer_idle_ms: int, maxlen: int | None
    ) -> tuple[int, int, int, int, int, float | None, float | None]:
        """``(ready, pending, delayed, dead, consumers, oldest_pending_s, oldest_ready_s)``."""
        with self.lock:
            now = monotonic()
            promoted = self._promote(now)
            if promoted:
                self._trim(maxlen)
            grp = self._groups.get(group)
            entries = self._entries
            if grp is None:
                ready, pending, consumers, oldest = len(entries), 0, 0, None
                first = next(iter(entries.values()), None)
            else:
                self._gc(grp, now, consumer_idle_ms)
                ready = sum(1 for eid in grp.ready if eid in entries)
                first = next((entries[eid] for eid in grp.ready if eid in entries), None)
                pending = len(grp.pel)
                # Consumers holding messages: what every backend can count alike.
                consumers = len({lease.consumer for lease in grp.pel.values()})
                oldest = max((now - lease.since for lease in grp.pel.values()), default=None)
            ready_age = None if first is None else max(0.0, now - first.since)
            result = (
                ready,
                pending,
                len(self._delayed),
                len(self._dead),
                consumers,
                oldest,
                ready_age,
            )
        if promoted:
            self.notifier.notify()
        return result

    def throughput(self) -> tuple[int, list[tuple[int, int, int]]]:
        """``(now in ms, [(bucket, pushed, acknowledged), ...])`` of the recent buckets."""
        with self.lock:
            return _wall_ms(), [(b, row[0], row[1]) for b, row in self._rates.items()]


class QueueSpace:
    """The queues of one memory store, by full queue key (created on first use)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, MemoryQueue] = {}

    def queue(self, key: str) -> MemoryQueue:
        """Return the queue stored under ``key``."""
        queue = self._queues.get(key)
        if queue is None:
            with self._lock:
                queue = self._queues.get(key)
                if queue is None:
                    queue = self._queues[key] = MemoryQueue()
        return queue

    def keys(self, prefix: str) -> list[str]:
        """The keys of the queues whose key starts with ``prefix``."""
        with self._lock:
            return [key for key in self._queues if key.startswith(prefix)]
