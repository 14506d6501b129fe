# SYNC-TEXT: "any thread or event loop" -> "any thread"
"""Queue primitives on the in-process engine (:mod:`kvkit._memory.queues`).

Every step is one call into the engine under its lock. Only a blocking pop waits: on the
queue's notifier, woken by pushes and give-backs from any thread or event loop, and for at
most the time until the engine's next scheduled event (a delayed message or a lease
expiring) -- so waiting never polls.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..._compat import await_notified
from ..._memory.queues import QueueSpace
from ..._queue_base import queue_name_of
from ..._queue_types import RawMessage
from .base import AsyncQueueDriver

if TYPE_CHECKING:
    from ..._memory import MemoryStore


class AsyncMemoryQueueDriver(AsyncQueueDriver):
    """Queues of one memory store."""

    def __init__(self, store: MemoryStore) -> None:
        self._space = store.space("queues", QueueSpace)

    async def push(
        self,
        key: str,
        items: list[tuple[str, bytes]],
        delay_ms: int,
        dedupe: str | None,
        dedupe_ms: int,
        maxlen: int | None,
    ) -> str | None:
        # In process nothing is lost between request and reply: only explicit dedupe ids
        # need remembering, not retries.
        return self._space.queue(key).push(items, delay_ms, dedupe, dedupe_ms, maxlen)

    async def pop(
        self,
        key: str,
        group: str,
        consumer: str,
        count: int,
        visibility_ms: int,
        max_deliveries: int,
        maxlen: int | None,
        timeout: float | None,
    ) -> list[RawMessage]:
        queue = self._space.queue(key)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            found, hint, version = queue.pop(
                group, consumer, count, visibility_ms, max_deliveries, maxlen
            )
            if found or timeout == 0:
                return found
            wait = hint
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return found
                wait = remaining if wait is None else min(wait, remaining)
            await await_notified(queue.notifier, version, wait)

    async def ack(self, key: str, group: str, items: list[tuple[str, str | None]]) -> int:
        return self._space.queue(key).ack(group, items)

    async def nack(
        self,
        key: str,
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
        return self._space.queue(key).nack(
            group,
            id=id,
            receipt=receipt,
            lease=lease,
            delay_ms=delay_ms,
            max_deliveries=max_deliveries,
            counted=counted,
            reason=reason,
            maxlen=maxlen,
        )

    async def extend(
        self, key: str, group: str, id: str, receipt: str | None, lease: int, idle_ms: int
    ) -> bool:
        return self._space.queue(key).extend(group, id, receipt, lease, idle_ms)

    async def dead_letter(self, key: str, group: str, receipt: str, reason: str) -> bool:
        return self._space.queue(key).dead_letter(group, receipt, reason)

    async def dead_letters(self, key: str, count: int) -> list[RawMessage]:
        return self._space.queue(key).dead_letters(count)

    async def requeue_dead(self, key: str, ids: set[str] | None, maxlen: int | None) -> int:
        return self._space.queue(key).requeue_dead(ids, maxlen)

    async def delete_dead(self, key: str, ids: set[str] | None) -> int:
        return self._space.queue(key).delete_dead(ids)

    async def purge(self, key: str, group: str, dead: bool) -> int:
        return self._space.queue(key).purge(dead)

    async def stats(
        self, key: str, group: str, consumer_idle_ms: int, maxlen: int | None
    ) -> tuple[int, int, int, int, int, float | None, float | None]:
        return self._space.queue(key).stats(group, consumer_idle_ms, maxlen)

    async def throughput(self, key: str) -> tuple[int, list[tuple[int, int, int]]]:
        return self._space.queue(key).throughput()

    async def names(self, prefix: str, limit: int) -> list[str]:
        found = (queue_name_of(key, prefix) for key in self._space.keys(prefix))
        return sorted({name for name in found if name is not None})[:limit]

    async def gc(self, key: str, group: str, consumer_idle_ms: int) -> None:
        self._space.queue(key).gc(group, consumer_idle_ms)

    async def expire(self, key: str, ttl_ms: int, message_ids: list[str]) -> None:
        return None  # the queue lives in this process only: nothing outlives it
