r"""Queue primitives on Redis Streams and one consumer group per group name.

Key layout of queue ``NAME`` (``{prefix}`` is the client's ``{settings.prefix}:queue:``);
the name in braces is a Cluster hash tag, so every key of a queue is in one slot:

========================================  ==================================================
``{prefix}{NAME}:stream``                 stream of live messages; fields ``id`` and
                                          ``payload`` (a fresh push: the entry id holds the
                                          enqueue time), plus ``enqueued_ms`` and
                                          ``prior_deliveries`` for a message added again
                                          (nack, delay, requeue); consumer groups live on it
``{prefix}{NAME}:ids``                    hash message id -> current stream entry id
                                          (ack/nack/extend by id)
``{prefix}{NAME}:delayed``                sorted set of delayed messages, score = due time
                                          (server ms); member ``~order\nid\nprior\nenqueued
                                          \npayload``, where ``order`` (server time in us,
                                          then the position in the batch) makes messages
                                          due in the same ms sort in push order
``{prefix}{NAME}:dead``                   stream of dead letters (+ ``deliveries``,
                                          ``reason``, ``group``, ``dead_ms``)
``{prefix}{NAME}:cursors``                hash ``cursor:<group>`` -> XAUTOCLAIM cursor,
                                          ``next:<group>`` -> when its next scan may start
``{prefix}{NAME}:dedupe:u:<dedupe_id>``   explicit dedupe record: ``generation:message
                                          id``, expires after the dedupe window
``{prefix}{NAME}:dedupe:r:<token>``       retry record of one push (expires after 120 s)
``{prefix}{NAME}:gen``                    generation counter; ``purge`` increments it,
                                          which voids all dedupe records
``{prefix}{NAME}:rates``                  hash: a ring of 64 five-second buckets of
                                          messages pushed and acknowledged (the
                                          dashboard's throughput); ``b<slot>`` bucket
                                          number, ``i<slot>`` pushed, ``o<slot>`` acked
========================================  ==================================================

Every step that touches more than one key, or reads then writes, is one Lua script, so it
is atomic and one round trip. A pop is one round trip too: a pipeline of the reclaim script
(promote due delayed messages, XAUTOCLAIM expired leases, dead-letter what exceeded
``max_deliveries``) and a plain ``XREADGROUP`` for new messages -- kept out of Lua because
copying a batch of entries into Lua and back costs more than the read itself. A blocking
pop blocks in ``XREADGROUP BLOCK`` slices shorter than the socket timeout and runs the
reclaim script again between slices, so that due delayed messages and expired leases are
noticed. After a reclaim run that found nothing to do, pops that keep finding new messages
skip the script for up to ``_SKIP_MAX_MS`` (see ``pop``): on a busy queue it cost the
server as much as the read. A pop that finds no new message always runs it.

Message ids are kvkit's (see the queue service), not stream entry ids, because a message
keeps its id when it is given back, delayed or requeued (which appends a new entry).
Acknowledged entries are deleted (XACK, then XTRIM MINID up to the first entry still
pending, and XDEL for the ones acknowledged out of order, in one script). When several
consumer groups read one stream (fan-out), an entry is deleted only once no other group
still has to read it or holds it.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from ..._errors import BackendError
from ..._keys import glob_escape
from ..._lua import LuaScript
from ..._queue_base import queue_name_of
from ..._queue_types import RawMessage
from ..._redis_queue_base import (
    ACK,
    DEAD_LETTER,
    DROP_DEAD,
    EXPIRE,
    EXTEND,
    GC,
    NACK,
    PURGE,
    PUSH,
    RECLAIM,
    REQUEUE,
    STATS,
    THROUGHPUT,
    UNREAD,
    as_text,
    field_text,
    is_nogroup,
    queue_keys,
    raw_messages,
    stored_count,
    stream_entries,
    throughput_rows,
)
from .base import AsyncQueueDriver
from .redis_runner import AsyncRedisRunner

# A push whose reply was lost is retried by ``backend.run`` within seconds; its retry
# record lives this long (ms), so a retry never enqueues twice.
_RETRY_WINDOW_MS = 120_000
# Due delayed messages promoted per pop (bounds the script's run time).
_PROMOTE_LIMIT = 1000
# Longest interval (ms) between two reclaim scans of a group's expired leases.
_SCAN_MAX_MS = 1000
# Longest a busy consumer skips the reclaim script (see the driver's pop), in ms.
_SKIP_MAX_MS = 100
# Dead letters scanned per requeue round trip.
_REQUEUE_BATCH = 500


async def _raw_pipeline(pool: Any, commands: list[list[Any]]) -> list[Any]:
    """Send ``commands`` in one write on a pooled connection and read their raw replies.

    Like the backend's raw single-command path: no redis-py pipeline object and no
    response callbacks. An error reply takes its command's place in the result.
    """
    conn = await pool.get_connection()
    try:
        await conn.send_packed_command(conn.pack_commands(commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await conn.read_response())
            except ResponseError as exc:  # read in full: the connection stays clean
                replies.append(exc)
        return replies
    except BaseException:
        # Error, timeout or cancellation with replies possibly in flight: this connection
        # must never serve another caller, or it would hand them our replies.
        await conn.disconnect(nowait=True)
        raise
    finally:
        await pool.release(conn)


class AsyncRedisQueueDriver(AsyncQueueDriver):
    """Queues on one Redis backend (also fakeredis and Cluster)."""

    def __init__(self, backend: AsyncRedisRunner) -> None:
        self._b = backend
        # (stream, group) -> monotonic time until which pops may skip the reclaim script.
        self._skip_until: dict[tuple[str, str], float] = {}

    async def _grouped(self, key: str, group: str, op: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``op`` that needs the group; create the group if it is missing, then rerun."""
        try:
            return await op()
        except BackendError as exc:
            if not is_nogroup(exc):
                raise
        await self._create_group(key, group)
        return await op()

    async def _create_group(self, key: str, group: str) -> None:
        stream = queue_keys(key)[0]

        async def create(r: Any) -> None:
            try:
                # From 0, not $: messages pushed before any consumer existed are delivered.
                await r.xgroup_create(stream, group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

        await self._b.run(create, idempotent=True)

    # -- producing ----------------------------------------------------------------------------
    async def push(
        self,
        key: str,
        items: list[tuple[str, bytes]],
        delay_ms: int,
        dedupe: str | None,
        dedupe_ms: int,
        maxlen: int | None,
    ) -> str | None:
        stream, delayed, _, ids, _ = queue_keys(key)
        if dedupe is not None:
            record, window = f"{key}:dedupe:u:{dedupe}", dedupe_ms
        else:
            # A retry record: if the reply is lost, backend.run retries the script and the
            # record makes the retry a no-op. That is what makes the push idempotent.
            token = items[0][0] if len(items) == 1 else secrets.token_hex(12)
            record, window = f"{key}:dedupe:r:{token}", _RETRY_WINDOW_MS
        args: list[Any] = [window, maxlen or 0, delay_ms]
        for message_id, payload in items:
            args.append(message_id)
            args.append(payload)
        if delay_ms:
            self._delayed(stream, delay_ms)
        original = await self._b.eval(
            PUSH,
            [stream, delayed, ids, record, f"{key}:gen", f"{key}:rates"],
            args,
            idempotent=True,
        )
        if original is None or dedupe is None:
            return None
        return as_text(original)

    # -- consuming ----------------------------------------------------------------------------
    async def _take(
        self, keys: list[str], args: list[Any], consumer: str, count: int
    ) -> tuple[list[RawMessage], int, int]:
        """One round trip: the reclaim script, then XREADGROUP for new messages."""
        stream, group = keys[0], args[0]
        reclaim = ["EVALSHA", RECLAIM.sha, len(keys), *keys, *args]
        read = ["XREADGROUP", "GROUP", group, consumer, "COUNT", count, "STREAMS", stream, ">"]

        async def op(r: Any) -> Any:
            # Cluster clients have no single pool: they take redis-py's pipeline.
            pool = getattr(r, "connection_pool", None)
            if pool is not None:
                replies = await _raw_pipeline(pool, [reclaim, read])
            else:
                pipe = r.pipeline(transaction=False)
                pipe.execute_command(*reclaim)
                pipe.execute_command(*read)
                replies = await pipe.execute(raise_on_error=False)
            if isinstance(replies[0], NoScriptError):
                # The script was not loaded (a new or restarted server). The read may
                # have leased entries already: keep them, and run the script on its own.
                await r.script_load(RECLAIM.source)
                replies[0] = await r.execute_command(*reclaim)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply  # the script's first: it reports a missing group
            return replies

        (claimed, due, expiry, more), fresh = await self._b.run(op, idempotent=True)
        due, expiry = int(due), int(expiry)
        # When may the next pop skip the script (see pop)? Not while it has work left
        # (an XAUTOCLAIM pass under way, more due messages than one promotion takes, or
        # leases it just reclaimed: more may follow); else until the next delayed message
        # is due, and never for longer than the reclaim scan interval.
        skip_ms = -1 if claimed or int(more) else min(_SKIP_MAX_MS, args[8])
        if 0 <= due < skip_ms:
            skip_ms = due
        self._skip_until[(stream, group)] = monotonic() + skip_ms / 1000.0
        out = raw_messages(claimed, None)
        entries = stream_entries(fresh)
        if entries:
            room = count - len(out)
            out.extend(raw_messages(entries[:room], 1))
            if len(entries) > room:
                # Reclaimed and new messages together exceed count: give the surplus back
                # unread (a second round trip, only on a pop that also reclaimed leases).
                surplus = [as_text(eid) for eid, _ in entries[room:]]
                await self._b.eval(
                    UNREAD, [stream], [group, consumer, args[3], *surplus], idempotent=True
                )
        return out, due, expiry

    async def _read(self, stream: str, group: str, consumer: str, count: int) -> list[RawMessage]:
        """A plain ``XREADGROUP`` of new messages (the pop without the reclaim script)."""
        reply = await self._b.command(
            "XREADGROUP",
            "GROUP",
            group,
            consumer,
            "COUNT",
            count,
            "STREAMS",
            stream,
            ">",
            idempotent=True,
        )
        return raw_messages(stream_entries(reply), 1)

    def _delayed(self, stream: str, delay_ms: int) -> None:
        """A message of ours becomes due in ``delay_ms``: the pop must not skip past it."""
        for slot, until in self._skip_until.items():
            if slot[0] == stream:
                self._skip_until[slot] = min(until, monotonic() + delay_ms / 1000.0)

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
        keys = list(queue_keys(key))
        stream = keys[0]
        # The reclaim script (promote due delayed messages, reclaim expired leases) costs
        # the server as much as the read itself, and it usually finds nothing: after a run
        # that found nothing due, pops skip it for a while (until the next delayed message
        # this process knows of is due, at most the reclaim scan interval) as long as new
        # messages keep coming. A pop that finds no new message always runs it, so an idle
        # or polling consumer sees due and expired messages at once; a busy one within
        # the scan interval -- the same bound the server-side scan throttle already gives.
        if monotonic() < self._skip_until.get((stream, group), 0.0):
            found: list[RawMessage] = await self._grouped(
                key, group, lambda: self._read(stream, group, consumer, count)
            )
            if found:
                return found
        scan_ms = min(_SCAN_MAX_MS, max(10, visibility_ms // 10))
        reason = f"max_deliveries ({max_deliveries}) exceeded"
        args: list[Any] = [
            group,
            consumer,
            count,
            visibility_ms,
            max_deliveries,
            maxlen or 0,
            _PROMOTE_LIMIT,
            reason,
            # Expired leases are looked for at most this often: redelivery may come this
            # much after the visibility timeout, and idle pops stay cheap.
            scan_ms,
        ]
        deadline = None if timeout is None else monotonic() + timeout
        # Block in slices the socket timeout cannot cut short; between slices the reclaim
        # script runs again and picks up due delayed messages and expired leases.
        socket_timeout = self._b.socket_timeout
        cap = max(0.01, socket_timeout * 0.8) if socket_timeout else 1.0
        while True:
            taken: tuple[list[RawMessage], int, int] = await self._grouped(
                key, group, lambda: self._take(keys, args, consumer, count)
            )
            found, due, expiry = taken
            if found or timeout == 0:
                return found
            wait = cap
            if deadline is not None:
                remaining = deadline - monotonic()
                if remaining <= 0:
                    return []
                wait = min(wait, remaining)
            if due >= 0:
                wait = min(wait, due / 1000.0 + 0.002)
            if expiry >= 0:
                # The oldest in-flight entry's lease; others may expire sooner, so look
                # again at least four times per visibility timeout.
                wait = min(wait, min(expiry, visibility_ms / 4) / 1000.0 + 0.002)
            block_ms = max(1, round(wait * 1000))
            reply = await self._grouped(
                key,
                group,
                lambda ms=block_ms: self._b.run(  # type: ignore[misc]
                    lambda r: r.xreadgroup(group, consumer, {stream: ">"}, count=count, block=ms),
                    idempotent=True,
                ),
            )
            entries = stream_entries(reply)
            if entries:
                return raw_messages(entries, 1)

    async def ack(self, key: str, group: str, items: list[tuple[str, str | None]]) -> int:
        stream, _, _, ids, _ = queue_keys(key)
        mids: list[str] = []
        receipts: list[str] = []
        lookups: list[str] = []
        for mid, receipt in items:
            if receipt:
                mids.append(mid)
                receipts.append(receipt)
            else:
                lookups.append(mid)
        joined = ",".join(mids)
        if joined.count(",") != len(mids) - 1:
            # An id with a comma (a foreign entry's: kvkit's are hex) would shift the others;
            # it is sent empty, which is harmless: foreign entries are not in the id index.
            joined = ",".join("" if "," in mid else mid for mid in mids)
        args: list[Any] = [group, len(receipts), joined, ",".join(receipts), *lookups]
        try:
            # Retry-safe: a repeat finds the entries acknowledged (it may count 0).
            return int(
                await self._b.eval(ACK, [stream, ids, f"{key}:rates"], args, idempotent=True)
            )
        except BackendError as exc:
            if is_nogroup(exc):
                return 0
            raise

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
        stream, delayed, dead, ids, _ = queue_keys(key)
        args: list[Any] = [
            group,
            id,
            receipt or "",
            lease,
            delay_ms,
            max_deliveries,
            "1" if counted else "0",
            reason,
            maxlen or 0,
        ]
        if delay_ms:
            self._delayed(stream, delay_ms)
        try:
            # Retry-safe: after a lost reply the retry finds the entry no longer leased.
            return int(
                await self._b.eval(NACK, [stream, delayed, dead, ids], args, idempotent=True)
            )
        except BackendError as exc:
            if is_nogroup(exc):
                return 0
            raise

    async def extend(
        self, key: str, group: str, id: str, receipt: str | None, lease: int, idle_ms: int
    ) -> bool:
        stream, _, _, ids, _ = queue_keys(key)
        args: list[Any] = [group, id, receipt or "", lease, idle_ms]
        try:
            return bool(await self._b.eval(EXTEND, [stream, ids], args, idempotent=True))
        except BackendError as exc:
            if is_nogroup(exc):
                return False
            raise

    async def dead_letter(self, key: str, group: str, receipt: str, reason: str) -> bool:
        stream, _, dead, ids, _ = queue_keys(key)
        try:
            return bool(
                await self._b.eval(
                    DEAD_LETTER, [stream, dead, ids], [group, receipt, reason], idempotent=True
                )
            )
        except BackendError as exc:
            if is_nogroup(exc):
                return False
            raise

    # -- dead letters and housekeeping ---------------------------------------------------------
    async def dead_letters(self, key: str, count: int) -> list[RawMessage]:
        dead = queue_keys(key)[2]
        entries = await self._b.run(
            lambda r: r.xrange(dead, "-", "+", count=count), idempotent=True
        )
        out: list[RawMessage] = []
        for eid, fields in entries:
            # Listed whatever another process wrote here (data in Redis is input, not
            # trusted): fields that are not
            # what kvkit writes read as 0 (numbers) or escaped text, never as an error.
            mid = fields.get(b"id")
            reason = fields.get(b"reason")
            out.append(
                RawMessage(
                    as_text(eid),
                    as_text(eid) if mid is None else field_text(mid),
                    fields.get(b"payload"),
                    stored_count(fields.get(b"enqueued_ms")) or 0,
                    stored_count(fields.get(b"deliveries")) or 0,
                    0,
                    "malformed dead letter: no reason" if reason is None else field_text(reason),
                )
            )
        return out

    async def requeue_dead(self, key: str, ids: set[str] | None, maxlen: int | None) -> int:
        stream, _, dead, index, _ = queue_keys(key)
        # Not strictly idempotent (a repeat could move a later batch), but it only ever
        # moves dead letters back, which is what the caller asked for.
        return await self._scan_dead(REQUEUE, [stream, dead, index], [maxlen or 0], ids)

    async def delete_dead(self, key: str, ids: set[str] | None) -> int:
        # A repeat after a lost reply finds those already gone: safe to retry.
        return await self._scan_dead(DROP_DEAD, [queue_keys(key)[2]], [], ids)

    async def _scan_dead(
        self, script: LuaScript, keys: list[str], args: list[Any], ids: set[str] | None
    ) -> int:
        """Run a dead-letter script page by page (all, or ``ids``); return its total count."""
        wanted = sorted(ids) if ids is not None else []
        start = "-"
        done = 0
        while True:
            page = [start, *args, _REQUEUE_BATCH, "1" if ids is None else "0", *wanted]
            count, start = await self._b.eval(script, keys, page, idempotent=True)
            done += int(count)
            start = as_text(start)
            if not start or (ids is not None and done >= len(wanted)):
                return done

    async def expire(self, key: str, ttl_ms: int, message_ids: list[str]) -> None:
        # The generation counter and the retry records of these pushes, which would
        # otherwise live their full window, are the queue's keys too.
        keys = [*queue_keys(key), f"{key}:gen", f"{key}:rates"]
        keys.extend(f"{key}:dedupe:r:{message_id}" for message_id in message_ids)
        await self._b.eval(EXPIRE, keys, [ttl_ms], idempotent=True)

    async def purge(self, key: str, group: str, dead: bool) -> int:
        keys = [*queue_keys(key), f"{key}:gen"]
        return int(await self._b.eval(PURGE, keys, ["1" if dead else "0"], idempotent=True))

    async def stats(
        self, key: str, group: str, consumer_idle_ms: int, maxlen: int | None
    ) -> tuple[int, int, int, int, int, float | None, float | None]:
        stream, delayed, dead, ids, _ = queue_keys(key)
        args: list[Any] = [group, consumer_idle_ms, maxlen or 0]
        ready, pending, n_delayed, n_dead, consumers, oldest, waiting = await self._b.eval(
            STATS, [stream, delayed, dead, ids], args, idempotent=True
        )
        oldest_s = None if int(oldest) < 0 else int(oldest) / 1000.0
        waiting_s = None if int(waiting) < 0 else int(waiting) / 1000.0
        return (
            int(ready),
            int(pending),
            int(n_delayed),
            int(n_dead),
            int(consumers),
            oldest_s,
            waiting_s,
        )

    async def throughput(self, key: str) -> tuple[int, list[tuple[int, int, int]]]:
        reply = await self._b.eval(THROUGHPUT, [f"{key}:rates"], [], idempotent=True)
        return throughput_rows(reply)

    async def names(self, prefix: str, limit: int) -> list[str]:
        # Every queue has a stream, a delayed set or a dead-letter stream under
        # {prefix}{NAME}:...; other keys of the queue (records, counters) name it too.
        pattern = glob_escape(prefix) + "{*}:*"

        async def sweep(r: Any) -> list[str]:
            found: set[str] = set()
            # Cluster: SCAN every primary (each has its own cursor); a plain client has one.
            extra = {"target_nodes": r.PRIMARIES} if hasattr(r, "PRIMARIES") else {}
            async for raw in r.scan_iter(match=pattern, count=1000, **extra):
                # No early break: an abandoned async SCAN iterator would be finalized later,
                # on whatever loop runs then. The scan is bounded by the keyspace anyway.
                name = queue_name_of(as_text(raw), prefix)
                if name is not None and len(found) < limit:
                    found.add(name)
            return sorted(found)

        result: list[str] = await self._b.run(sweep, idempotent=True)
        return result

    async def gc(self, key: str, group: str, consumer_idle_ms: int) -> None:
        await self._b.eval(GC, [queue_keys(key)[0]], [group, consumer_idle_ms], idempotent=True)
