"""The queue service: validation, ids, codec, delivery policy and consumer loop.

Storage and atomicity live in the drivers (``backends/redis_queue.py``: Redis Streams and
Lua; ``backends/memory_queue.py``: the in-process engine). This module decides what is
valid, how payloads are encoded, which message is dead-lettered and why, how failures are
retried and how ``consume`` runs handlers.

Delivery is at-least-once. A popped message is leased to its consumer for the queue's
visibility timeout; if it is not acknowledged (``ack``) or given back (``nack``) in time it
is delivered again, to any consumer. A message that would be delivered more than
``max_deliveries`` times goes to the dead-letter queue instead.

Delivery order, the same on every backend: messages are delivered in stream order, the
order in which they were pushed (a ``push_many`` batch in its order, delayed ones when due,
in push order among those due in the same millisecond) or given back (``nack`` puts a
message at the end). A pop first reclaims expired leases -- in stream order, at most
``count`` of them, continuing after the last lease the previous pop reclaimed and then
starting over, like ``XAUTOCLAIM`` with a cursor: those over ``max_deliveries`` are
dead-lettered, the others redelivered -- then fills the room left with new messages.
``extend`` does not move a message.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from .._backoff import backoff_delay
from .._compat import AsyncWorkers, acall, asleep, await_notified
from .._errors import AuthenticationError, BackendError, DecodeError, InvalidArgument
from .._keys import validate_key
from .._metrics import Meter
from .._queue_base import (
    MAX_BATCH,
    ConsumeRun,
    check_count,
    checked_delay_ms,
    failure_reason,
    message_ids,
    new_ids,
    positive_ms,
    receipt_lease,
    throughput_series,
    wait_seconds,
)
from .._queue_types import Message, QueueStats, RawMessage, new_message
from .._serde import Codec
from .backends.base import AsyncQueueDriver
from .metered import metered

__all__ = ["AsyncProcessing", "AsyncQueueService"]

log = logging.getLogger("kvkit.queue")

monotonic = time.monotonic

#: Default of the ``dedupe_window`` option: how long an explicit ``dedupe_id`` is remembered.
DEDUPE_WINDOW = 3600.0
# A consumer that holds no message and was idle this long is removed from its group.
_CONSUMER_IDLE_MS = 300_000
# ...which is checked at most this often per queue and group in a process.
_GC_EVERY = 60.0
_gc_due: dict[tuple[str, str], float] = {}
# consume(): how long one pop waits before the stop event is looked at again.
_CONSUME_POLL = 0.5
# consume(): a failed message comes back after base * 2**(deliveries - 1) s, capped.
_RETRY_BASE = 1.0
_RETRY_CAP = 300.0


# -- process() -------------------------------------------------------------------------------
class AsyncProcessing:
    """What :meth:`AsyncQueueService.process` returns: a context manager around one pop.

    Entering pops a message (``None`` when none arrived within the timeout). Leaving
    normally acknowledges it; leaving with an exception gives it back for redelivery and
    lets the exception propagate.
    """

    def __init__(self, queue: AsyncQueueService, timeout: float | None) -> None:
        self._queue = queue
        self._timeout = timeout
        self._message: Message | None = None

    async def __aenter__(self) -> Message | None:
        self._message = await self._queue.pop(self._timeout)
        return self._message

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        message, self._message = self._message, None
        if message is None:
            return
        if exc_type is None:
            await self._queue.ack(message)
            return
        queue = self._queue
        try:
            # The block's error is kept as the reason if the message ends up dead.
            await queue._nack(message, None, failure_reason(queue.max_deliveries, exc))
        except BackendError as error:
            # Keep the caller's exception; the lease expires and the message comes back.
            log.warning(
                "queue %r: could not give message %s back: %s", queue.name, message.id, error
            )


# -- the service ------------------------------------------------------------------------------
@metered(
    "queue",
    *("push", "push_many", "pop", "pop_many", "ack", "extend", "stats", "dead_letters"),
    *("requeue_dead", "delete_dead", "purge", "expire_keys", "throughput"),
    _nack="nack",
)
class AsyncQueueService:
    """One queue. Implements :class:`kvkit.AsyncQueue`; obtain it from ``client.queue(name)``.

    Args:
        driver: The backend's queue driver.
        name: Queue name: a non-empty str (at most 1024 UTF-8 bytes) without ``{`` or ``}``.
        prefix: Key prefix of the client's queues (e.g. ``"kvkit:queue:"``).
        codec: Payload codec.
        where: Redacted backend URL, for messages.
        visibility_timeout: Seconds a popped message stays leased to its consumer before
            it is delivered again (default 30, at most 100 years like every duration).
        max_deliveries: Deliveries after which a message that is still not acknowledged
            goes to the dead-letter queue instead of being delivered again (default 5).
        group: Consumer group. Consumers of one group share the messages (each message
            goes to one of them). Several groups on one queue each receive every message
            (fan-out); an entry is deleted once every group has acknowledged it.
        consumer: This consumer's name within the group (default: ``host-pid-random``,
            unique per queue object and renewed in a forked child).
        maxlen: Bound on the number of messages in the queue (ready and in flight): the
            oldest are dropped, like Redis ``XADD MAXLEN``. Default: unbounded. A dropped
            message in flight is no longer leased (``ack`` counts 0), as after ``purge``.
        dedupe_window: Seconds during which a ``dedupe_id`` is remembered (default 3600).

    Raises:
        InvalidArgument: the name or an option is invalid.
    """

    def __init__(
        self,
        driver: AsyncQueueDriver,
        *,
        name: str,
        prefix: str,
        codec: Codec,
        where: str,
        visibility_timeout: float = 30.0,
        max_deliveries: int = 5,
        group: str = "kvkit",
        consumer: str | None = None,
        maxlen: int | None = None,
        dedupe_window: float = DEDUPE_WINDOW,
    ) -> None:
        validate_key(name, "queue name")
        if "{" in name or "}" in name:
            raise InvalidArgument("queue name must not contain '{' or '}' (it is a hash tag)")
        self._driver = driver
        self._name = name
        self._key = f"{prefix}{{{name}}}"
        self._codec = codec
        self._where = where
        self._vis_ms = positive_ms(visibility_timeout, "visibility_timeout")
        self._max_deliveries = check_count(max_deliveries, "max_deliveries")
        self._group = validate_key(group, "group")
        self._maxlen = None if maxlen is None else check_count(maxlen, "maxlen")
        self._dedupe_ms = positive_ms(dedupe_window, "dedupe_window")
        self._fixed_consumer = None if consumer is None else validate_key(consumer, "consumer")
        self._consumer = ""
        self._consumer_pid = -1
        self._dead_reason = failure_reason(self._max_deliveries, None)

    _meter: Meter | None = None  # set by the client's metrics recorder

    def __repr__(self) -> str:
        return f"<kvkit queue {self._name!r} group={self._group!r} on {self._where}>"

    # -- properties ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The queue's name."""
        return self._name

    @property
    def key(self) -> str:
        """The base key of the queue's storage (``{prefix}{name}``, name as hash tag)."""
        return self._key

    @property
    def group(self) -> str:
        """The consumer group this queue object consumes in."""
        return self._group

    @property
    def consumer(self) -> str:
        """This queue object's consumer name within the group."""
        if self._fixed_consumer is not None:
            return self._fixed_consumer
        pid = os.getpid()
        if pid != self._consumer_pid:
            # Regenerated in a forked child: two processes must never share a consumer.
            self._consumer = f"{socket.gethostname()}-{pid}-{secrets.token_hex(4)}"
            self._consumer_pid = pid
        return self._consumer

    @property
    def visibility_timeout(self) -> float:
        """Seconds a popped message stays leased."""
        return self._vis_ms / 1000.0

    @property
    def max_deliveries(self) -> int:
        """Deliveries after which an unacknowledged message is dead-lettered."""
        return self._max_deliveries

    # -- producing ------------------------------------------------------------------------------
    async def push(self, payload: Any, *, delay: Any = None, dedupe_id: str | None = None) -> str:
        """Enqueue ``payload``; return its message id.

        Safe to retry: a push whose reply was lost is retried by kvkit without enqueuing
        twice.

        Args:
            payload: Any value the codec accepts (JSON plus kvkit's tagged types).
            delay: Seconds (or a timedelta) before the message becomes available;
                ``None`` or 0 for now.
            dedupe_id: Makes the push idempotent: another push with the same
                ``dedupe_id`` within the queue's ``dedupe_window`` enqueues nothing and
                returns the first push's message id.

        Returns:
            The message id.

        Raises:
            InvalidArgument: bad ``delay`` or ``dedupe_id``.
            SerializationError: the payload cannot be encoded; nothing is enqueued.
            BackendError: the backend failed.
        """
        delay_ms = checked_delay_ms(delay)
        if dedupe_id is not None:
            validate_key(dedupe_id, "dedupe_id")
        data = self._codec.encode(self._name, payload)
        message_id = new_ids(1)[0]
        original = await self._driver.push(
            self._key, [(message_id, data)], delay_ms, dedupe_id, self._dedupe_ms, self._maxlen
        )
        return message_id if original is None else original

    async def push_many(self, payloads: Iterable[Any], *, delay: Any = None) -> list[str]:
        """Enqueue every payload, in order, in one round trip; return their ids.

        Every payload is encoded first: one that cannot be encoded enqueues nothing.
        Atomic on Redis (all or nothing) and safe to retry like :meth:`push`.

        The messages are delivered in this order, also when delayed (``delay``).

        Raises:
            InvalidArgument: ``payloads`` is not an iterable, or ``delay`` is bad.
            SerializationError: a payload cannot be encoded; nothing is enqueued.
        """
        if isinstance(payloads, (str, bytes, dict)) or not hasattr(payloads, "__iter__"):
            raise InvalidArgument(
                f"payloads must be an iterable of payloads, not {type(payloads).__name__!r}"
            )
        delay_ms = checked_delay_ms(delay)
        encode, name = self._codec.encode, self._name
        data = [encode(name, payload) for payload in payloads]
        if not data:
            return []
        ids = new_ids(len(data))
        await self._driver.push(
            self._key, list(zip(ids, data, strict=True)), delay_ms, None, 0, self._maxlen
        )
        return ids

    # -- consuming ------------------------------------------------------------------------------
    async def pop(self, timeout: float | None = 0) -> Message | None:
        """Lease the next message.

        Args:
            timeout: 0 (default): do not wait; N: wait up to N seconds (any length, also
                beyond the socket timeout); ``None``: wait until a message arrives.

        Returns:
            The message, or ``None`` when none arrived in time.

        Raises:
            InvalidArgument: bad ``timeout``.
            BackendError: the backend failed.
        """
        messages = await self._pop_many(1, timeout)
        return messages[0] if messages else None

    async def pop_many(self, count: int, timeout: float | None = 0) -> list[Message]:
        """Lease up to ``count`` messages, waiting like :meth:`pop` for the first one.

        Expired leases are reclaimed first (redeliveries), then new messages are read.
        Stored entries that cannot be decoded are moved to the dead-letter queue (logged
        with the reason) and skipped.

        A pop looks at up to ``count`` expired leases, in stream order: the ones that
        reached ``max_deliveries`` go to the dead-letter queue, the others are delivered,
        and the room left is filled with new messages; the next pop goes on with the
        expired leases after them (see the module docstring). On Redis a lease is seen
        expired within ``min(1 s, visibility_timeout / 10)`` of its expiry.

        Raises:
            InvalidArgument: bad ``count`` (at most :data:`MAX_BATCH`) or ``timeout``.
        """
        return await self._pop_many(count, timeout)

    async def _pop_many(self, count: int, timeout: float | None) -> list[Message]:
        count = check_count(count, "count", maximum=MAX_BATCH)
        wait = wait_seconds(timeout)
        deadline = None if wait is None else monotonic() + wait
        await self._maybe_gc()
        while True:
            raws = await self._driver.pop(
                self._key,
                self._group,
                self.consumer,
                count,
                self._vis_ms,
                self._max_deliveries,
                self._maxlen,
                wait,
            )
            if not raws:
                return []
            messages, bad = self._decode(raws)
            for raw, reason in bad:
                log.warning(
                    "queue %r: message %s moved to the dead-letter queue: %s",
                    self._name,
                    raw.id,
                    reason,
                )
                try:
                    await self._driver.dead_letter(self._key, self._group, raw.receipt, reason)
                except BackendError as exc:
                    # The good messages popped with it are leased: hand them out anyway.
                    # The bad entry comes back when its lease expires, and is tried again.
                    log.warning(
                        "queue %r: could not dead-letter message %s: %s", self._name, raw.id, exc
                    )
            if messages:
                return messages
            # Everything received was dead-lettered: keep waiting for the rest of the time.
            if deadline is not None:
                wait = max(0.0, deadline - monotonic())

    def _decode(self, raws: list[RawMessage]) -> tuple[list[Message], list[tuple[RawMessage, str]]]:
        """Decode payloads: the messages, and the entries to dead-letter with the reason."""
        name = self._name
        payloads = [raw[2] for raw in raws]
        values: Any = None
        if None not in payloads:
            # The usual case: every payload decodes. One batch call (one orjson pass and
            # one tag search) keyed by receipt, which is unique within a pop.
            try:
                decoded = self._codec.decode_many([raw[0] for raw in raws], payloads)
            except DecodeError:
                pass  # find the culprits one by one below
            else:
                if len(decoded) == len(raws):
                    values = decoded.values()
        if values is not None:
            return [
                new_message(raw[1], value, name, raw[4], raw[3] / 1000.0, (self, raw[0], raw[5]))
                for raw, value in zip(raws, values, strict=True)
            ], []
        decode = self._codec.decode
        messages: list[Message] = []
        bad: list[tuple[RawMessage, str]] = []
        for raw in raws:
            data = raw[2]
            if data is None:
                # A driver reports a malformed entry (another process's) without a payload.
                bad.append((raw, raw[6] or "malformed entry: no payload"))
                continue
            try:
                payload = decode(name, data)
            except DecodeError as exc:
                bad.append((raw, f"undecodable payload: {exc}"))
                continue
            messages.append(
                new_message(raw[1], payload, name, raw[4], raw[3] / 1000.0, (self, raw[0], raw[5]))
            )
        return messages, bad

    def _target(self, item: Any) -> tuple[str, str | None, int] | None:
        """``(id, receipt, lease)`` of a message or id; ``None`` for another queue's message."""
        if isinstance(item, Message):
            if item.queue != self._name:
                return None
            handle = item._handle
            if handle is None:
                return item.id, None, 0
            return item.id, handle[1], handle[2]
        if isinstance(item, str):
            return item, None, 0
        raise InvalidArgument(
            f"expected a kvkit.Message or a message id, not {type(item).__name__!r}"
        )

    async def ack(self, *messages_or_ids: Message | str) -> int:
        """Acknowledge messages: they are deleted and will not be delivered again.

        Args:
            *messages_or_ids: :class:`~kvkit.Message` objects or message ids.

        Returns:
            How many of them were leased (unknown, foreign or already acknowledged ids
            count 0; never raises for them).

        Raises:
            InvalidArgument: an argument is neither a Message nor a str.
        """
        items: list[tuple[str, str | None]] = []
        append, name = items.append, self._name
        for item in messages_or_ids:
            if type(item) is Message:
                # Inline _target for the usual argument: a message this queue delivered.
                if item.queue == name:
                    handle = item._handle
                    append((item.id, None if handle is None else handle[1]))
                continue
            target = self._target(item)
            if target is not None:
                append((target[0], target[1]))
        if not items:
            return 0
        return await self._driver.ack(self._key, self._group, items)

    async def nack(self, message_or_id: Message | str, *, delay: Any = None) -> None:
        """Give a leased message back for redelivery (after ``delay`` seconds if given).

        The delivery counts: a message already delivered ``max_deliveries`` times goes to
        the dead-letter queue instead. Nothing happens if the message is not leased
        (acknowledged, or its lease expired and another consumer took it).

        Raises:
            InvalidArgument: bad ``delay`` or argument type.
        """
        await self._nack(message_or_id, delay, self._dead_reason)

    async def _nack(self, message_or_id: Message | str, delay: Any, reason: str) -> None:
        """:meth:`nack`; ``reason`` is kept if the message goes to the dead letters."""
        delay_ms = checked_delay_ms(delay)
        target = self._target(message_or_id)
        if target is None:
            return
        message_id, receipt, lease = target
        result = await self._driver.nack(
            self._key,
            self._group,
            id=message_id,
            receipt=receipt,
            lease=lease,
            delay_ms=delay_ms,
            max_deliveries=self._max_deliveries,
            counted=True,
            reason=reason,
            maxlen=self._maxlen,
        )
        if result == 2:
            log.warning(
                "queue %r: message %s moved to the dead-letter queue: %s",
                self._name,
                message_id,
                reason,
            )

    async def _give_back(self, messages: list[Message]) -> None:
        """Return unprocessed messages without counting their delivery (consume's stop)."""
        for message in messages:
            try:
                receipt, lease = receipt_lease(message)
                await self._driver.nack(
                    self._key,
                    self._group,
                    id=message.id,
                    receipt=receipt,
                    lease=lease,
                    # Given back unprocessed: at once, and the delivery does not count.
                    delay_ms=0,
                    max_deliveries=self._max_deliveries,
                    counted=False,
                    reason=self._dead_reason,
                    maxlen=self._maxlen,
                )
            except BackendError as exc:
                log.warning(
                    "queue %r: could not give message %s back (its lease will expire): %s",
                    self._name,
                    message.id,
                    exc,
                )

    async def extend(self, message_or_id: Message | str, seconds: Any = None) -> bool:
        """Renew a lease: the message stays leased for ``seconds`` from now.

        The message keeps its place: if its lease expires, it is redelivered in stream
        order among the other expired leases, not by the time its lease ran out.

        Args:
            message_or_id: The leased message or its id.
            seconds: New lease length, at most the visibility timeout (default).

        Returns:
            Whether the message was still leased (``False`` if acknowledged, given back,
            or taken over by another consumer after its lease expired).

        Raises:
            InvalidArgument: ``seconds`` is not positive or exceeds the visibility timeout.
        """
        if seconds is None:
            lease_ms = self._vis_ms
        else:
            lease_ms = positive_ms(seconds, "seconds")
            if lease_ms > self._vis_ms:
                raise InvalidArgument(
                    f"seconds ({lease_ms / 1000}) must not exceed the visibility timeout "
                    f"({self._vis_ms / 1000})"
                )
        target = self._target(message_or_id)
        if target is None:
            return False
        return await self._driver.extend(
            self._key, self._group, target[0], target[1], target[2], self._vis_ms - lease_ms
        )

    # SYNC-TEXT: "``async with queue.process(timeout=5) as message:`` on the async client." ->
    #   "``with queue.process(timeout=5) as message:``."
    def process(self, timeout: float | None = 0) -> AsyncProcessing:
        """Pop one message for a ``with`` block; ack when the block succeeds, nack if it raises.

        ``async with queue.process(timeout=5) as message:`` on the async client. The block
        gets ``None`` when no message arrived in time. An exception in the block gives the
        message back (immediate redelivery) and propagates.

        Raises:
            InvalidArgument: bad ``timeout``.
        """
        return AsyncProcessing(self, wait_seconds(timeout))

    # SYNC-TEXT: "; on the async client it may be an ``async def`` (awaited) or a plain
    #   function." -> "."
    # SYNC-TEXT: "``threading.Event`` / ``asyncio.Event``" -> "``threading.Event``"
    # SYNC-TEXT: "(threads on the sync client, tasks on the async client)" -> "(threads)"
    async def consume(
        self,
        handler: Callable[[Message], Any],
        *,
        batch: int = 10,
        stop: Any = None,
        max_messages: int | None = None,
        concurrency: int = 1,
    ) -> int:
        """Call ``handler(message)`` for each message until stopped.

        A handler that returns acknowledges the message. A handler that raises gets it
        nacked with a backoff that grows with its deliveries (1 s, 2 s, 4 s, ... capped
        at 5 min) and the failure logged (logger ``kvkit.queue``: id, delivery and
        exception, never the payload); after ``max_deliveries`` it is dead-lettered. While
        a handler runs longer than a third of the visibility timeout, the lease of every
        message in hand is renewed. Transient backend errors are logged and retried with
        backoff; the loop keeps going.

        Args:
            handler: Called with each :class:`~kvkit.Message`; on the async client it may
                be an ``async def`` (awaited) or a plain function.
            batch: Messages popped per round trip by each worker.
            stop: A ``threading.Event`` / ``asyncio.Event`` (anything with ``is_set()``):
                once set, the loop finishes the message in hand, gives back the other
                popped ones and returns.
            max_messages: Stop after this many messages were handled.
            concurrency: Number of workers handling messages at once (threads on the sync
                client, tasks on the async client).

        Returns:
            How many messages were handled (acknowledged or failed).

        Raises:
            InvalidArgument: a bad argument.
            AuthenticationError: the backend rejected the credentials.
        """
        if not callable(handler):
            raise InvalidArgument(f"handler must be callable, not {type(handler).__name__!r}")
        batch = check_count(batch, "batch", maximum=MAX_BATCH)
        concurrency = check_count(concurrency, "concurrency")
        if max_messages is not None:
            max_messages = check_count(max_messages, "max_messages", 0)
        if stop is not None and not callable(getattr(stop, "is_set", None)):
            raise InvalidArgument("stop must be an Event (an object with is_set())")
        run = ConsumeRun(handler, batch, stop, max_messages, self._vis_ms / 3000.0)
        keeper = AsyncWorkers()
        keeper.start(self._keep_leases, run)
        try:
            if concurrency == 1:
                await self._work(run)
            else:
                workers = AsyncWorkers()
                for _ in range(concurrency):
                    workers.start(self._work, run)
                await workers.join()
        finally:
            run.finish()
            await keeper.join()
        return run.processed

    async def _work(self, run: ConsumeRun) -> None:
        """One consume worker: pop a batch, handle it, repeat until stopped."""
        failures = 0
        try:
            while not run.stopping():
                wanted = run.reserve(run.batch)
                if wanted == 0:
                    return
                try:
                    messages = await self.pop_many(wanted, _CONSUME_POLL)
                except AuthenticationError:
                    run.unreserve(wanted)
                    raise
                except BackendError as exc:
                    run.unreserve(wanted)
                    pause = backoff_delay(failures, base=0.1, cap=5.0)
                    failures += 1
                    log.warning(
                        "queue %r: pop failed on %s (retrying in %.2f s): %s",
                        self._name,
                        self._where,
                        pause,
                        exc,
                    )
                    await asleep(pause)
                    continue
                failures = 0
                run.unreserve(wanted - len(messages))
                run.hold(messages)
                for index, message in enumerate(messages):
                    if run.stopping():
                        rest = messages[index:]
                        run.drop(rest)
                        run.unreserve(len(rest))
                        await self._give_back(rest)
                        return
                    await self._handle(run, message)
        except BaseException:
            run.close()  # one worker failing stops the others
            raise

    async def _handle(self, run: ConsumeRun, message: Message) -> None:
        try:
            result = await acall(run.handler, message)
        except Exception as exc:
            run.done(message)
            delay = min(_RETRY_CAP, _RETRY_BASE * 2 ** (message.deliveries - 1))
            log.error(
                "queue %r: handler failed on message %s (delivery %d of %d); retrying in %g s",
                self._name,
                message.id,
                message.deliveries,
                self._max_deliveries,
                delay,
                exc_info=exc,
            )
            try:
                await self._nack(message, delay, failure_reason(self._max_deliveries, exc))
            except BackendError as nack_exc:
                log.warning(
                    "queue %r: could not nack message %s (its lease will expire): %s",
                    self._name,
                    message.id,
                    nack_exc,
                )
            return
        except BaseException:
            run.drop([message])
            await self._give_back([message])
            raise
        if inspect.isawaitable(result):
            # Only the sync client gets here: an ``async def`` handler was never run.  # SYNC-KEEP
            getattr(result, "close", lambda: None)()
            run.drop([message])
            await self._give_back([message])
            raise InvalidArgument(
                "the handler returned an awaitable: async handlers need AsyncClient"  # SYNC-KEEP
            )
        run.done(message)
        try:
            await self.ack(message)
        except BackendError as exc:
            log.warning(
                "queue %r: could not ack message %s (it will be delivered again): %s",
                self._name,
                message.id,
                exc,
            )

    async def _keep_leases(self, run: ConsumeRun) -> None:
        """Renew the leases of messages held longer than a third of the visibility timeout."""
        tick = run.renew_after / 2
        while True:
            version = run.notifier.version
            if run.is_finished():
                return
            await await_notified(run.notifier, version, tick)
            if run.is_finished():
                return
            for message in run.due():
                try:
                    if not await self.extend(message):
                        log.warning(
                            "queue %r: lease of message %s was lost while its handler ran",
                            self._name,
                            message.id,
                        )
                except BackendError as exc:
                    log.warning(
                        "queue %r: could not renew the lease of message %s: %s",
                        self._name,
                        message.id,
                        exc,
                    )

    # -- inspection and administration ----------------------------------------------------------
    async def stats(self) -> QueueStats:
        """Return a snapshot of the queue as seen by this queue's group.

        Ready, pending (in flight), delayed and dead messages, the group's active
        consumers and the age of the longest-held lease (see :class:`kvkit.QueueStats`).
        """
        values = await self._driver.stats(self._key, self._group, _CONSUMER_IDLE_MS, self._maxlen)
        return QueueStats(*values)

    async def throughput(self, window: float = 300.0) -> list[dict[str, Any]]:
        """Messages pushed and acknowledged per 5-second bucket over the last ``window`` s.

        Counted by the store itself (every producer and consumer of the queue, in any
        process), in a ring of 64 buckets: about five minutes of history.

        Args:
            window: Seconds to cover, at most about 320.

        Returns:
            ``[{"t": bucket start (Unix seconds), "in": pushed, "out": acknowledged}, ...]``
            oldest first, empty buckets included; the last one is still filling.

        Raises:
            InvalidArgument: ``window`` is not a positive number of seconds.
        """
        seconds = positive_ms(window, "window") / 1000.0
        now_ms, rows = await self._driver.throughput(self._key)
        return throughput_series(now_ms, rows, seconds)

    async def dead_letters(self, count: int = 100) -> list[Message]:
        """Return up to ``count`` dead letters, oldest first (they stay in the DLQ).

        Each has ``reason`` set. A payload that cannot be decoded is returned as the raw
        ``bytes``.

        Raises:
            InvalidArgument: bad ``count``.
        """
        count = check_count(count, "count")
        out: list[Message] = []
        for raw in await self._driver.dead_letters(self._key, count):
            payload: Any = raw.payload
            if payload is not None:
                # Undecodable: keep the raw bytes, which is what the reason talks about.
                with contextlib.suppress(DecodeError):
                    payload = self._codec.decode(self._name, payload)
            out.append(
                Message(
                    raw.id,
                    payload,
                    self._name,
                    raw.deliveries,
                    raw.enqueued_ms / 1000.0,
                    (self, None, 0),
                    reason=raw.reason,
                )
            )
        return out

    async def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        """Move dead letters back to the queue with their delivery count reset.

        Args:
            ids: Message ids to requeue; ``None`` requeues every dead letter.

        Returns:
            How many were requeued.

        Raises:
            InvalidArgument: ``ids`` is not an iterable of str.
        """
        wanted = message_ids(ids)
        if wanted is not None and not wanted:
            return 0
        return await self._driver.requeue_dead(self._key, wanted, self._maxlen)

    async def delete_dead(self, ids: Iterable[str] | None = None) -> int:
        """Delete dead letters for good (they are not requeued).

        Args:
            ids: Message ids to delete; ``None`` deletes every dead letter (like
                ``purge(dead=True)`` does, without touching the live messages).

        Returns:
            How many were deleted.

        Raises:
            InvalidArgument: ``ids`` is not an iterable of str.
        """
        wanted = message_ids(ids)
        if wanted is not None and not wanted:
            return 0
        return await self._driver.delete_dead(self._key, wanted)

    async def purge(self, *, dead: bool = False) -> int:
        """Delete every message of the queue: ready, in flight and delayed.

        Dedupe records are forgotten too. Consumers holding a purged message get 0 from
        ``ack``.

        Args:
            dead: Also empty the dead-letter queue.

        Returns:
            How many messages were deleted.
        """
        return await self._driver.purge(self._key, self._group, bool(dead))

    async def expire_keys(self, ttl: float, *, message_ids: Iterable[str] = ()) -> None:
        """Make the queue a throwaway: every key it has on the server expires after ``ttl``.

        For short-lived queues (the health probes use it): call it after each use, and the
        queue vanishes ``ttl`` seconds after the last one, messages and all. The push
        records kept for the retry of a lost reply expire with it for ``message_ids``;
        ``dedupe_id`` records keep their own window (the ``dedupe_window`` option).
        Queues of in-process backends (``memory://``) end with the process and ignore it.

        Args:
            ttl: Seconds, > 0.
            message_ids: Ids returned by this queue's recent pushes.

        Raises:
            InvalidArgument: ``ttl`` is not a positive number of seconds, or an id is not a
                ``str``.
            BackendError: the backend failed.
        """
        ids = list(message_ids)
        for message_id in ids:
            if not isinstance(message_id, str):
                raise InvalidArgument(f"message ids must be str, not {type(message_id).__name__!r}")
        await self._driver.expire(self._key, positive_ms(ttl, "ttl"), ids)

    async def _maybe_gc(self) -> None:
        # Each queue object that pops adds a consumer to the group; remove the idle ones
        # now and then so that short-lived queue objects do not pile up forever.
        slot = (self._key, self._group)
        now = monotonic()
        if _gc_due.get(slot, 0.0) > now:
            return
        _gc_due[slot] = now + _GC_EVERY
        await self._driver.gc(self._key, self._group, _CONSUMER_IDLE_MS)
