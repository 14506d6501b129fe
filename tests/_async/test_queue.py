"""The Queue protocol on every backend (memory, fakeredis, real Redis)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
import uuid
from decimal import Decimal

import pytest

import kvkit
from kvkit._compat import AsyncEvent, asleep
from tests.backends import settings_for

# Short leases keep the redelivery tests fast; the waits below are multiples of them.
VIS = 0.3


@pytest.fixture
async def queue(make_queue):
    """A queue with a short visibility timeout."""
    return make_queue("jobs", visibility_timeout=VIS, max_deliveries=3)


# -- push / pop ---------------------------------------------------------------------------------
async def test_queue_implements_the_protocol(queue):
    """client.queue() returns an object satisfying kvkit.AsyncQueue."""
    assert isinstance(queue, kvkit.AsyncQueue)
    assert queue.name == "jobs"


async def test_push_pop_ack_round_trip(queue):
    """A pushed payload comes back as a Message with its id, queue and first delivery."""
    before = time.time()
    message_id = await queue.push({"to": "alice", "n": 1})
    assert isinstance(message_id, str) and message_id
    message = await queue.pop()
    assert isinstance(message, kvkit.Message)
    assert message.id == message_id
    assert message.payload == {"to": "alice", "n": 1}
    assert message.queue == "jobs"
    assert message.deliveries == 1
    assert before - 1 <= message.enqueued_at <= time.time() + 1
    assert message.reason is None
    assert await queue.ack(message) == 1
    assert await queue.pop() is None


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "héllo ✓",
        [1, "a", None],
        (1, (2, 3)),
        {"a", "b"},
        b"\x00\xff",
        Decimal("1.10"),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc),
        2**70,
    ],
    ids=lambda v: type(v).__name__,
)
async def test_payload_types_round_trip(queue, payload):
    """Payloads round-trip with the codec's types."""
    await queue.push(payload)
    message = await queue.pop()
    assert message.payload == payload
    assert type(message.payload) is type(payload)


async def test_pop_on_empty_queue_returns_none_at_once(queue):
    """pop() with the default timeout 0 does not wait."""
    start = time.monotonic()
    assert await queue.pop() is None
    assert await queue.pop_many(5) == []
    assert time.monotonic() - start < 1.0


async def test_pop_with_timeout_returns_none_after_the_timeout(queue):
    """pop(timeout=T) on an empty queue returns None after about T seconds."""
    start = time.monotonic()
    assert await queue.pop(timeout=0.3) is None
    assert 0.25 <= time.monotonic() - start < 3.0


async def test_messages_come_out_in_push_order(queue):
    """Messages are delivered first-in first-out; pop_many returns up to count."""
    ids = [await queue.push(i) for i in range(5)]
    first = await queue.pop_many(3)
    assert [m.payload for m in first] == [0, 1, 2]
    assert [m.id for m in first] == ids[:3]
    rest = await queue.pop_many(10)
    assert [m.payload for m in rest] == [3, 4]


async def test_push_many_returns_ids_in_order(queue):
    """push_many enqueues every payload in order and returns their ids."""
    ids = await queue.push_many(["a", "b", "c"])
    assert len(ids) == len(set(ids)) == 3
    messages = await queue.pop_many(10)
    assert [(m.id, m.payload) for m in messages] == list(zip(ids, ["a", "b", "c"], strict=True))
    assert await queue.push_many([]) == []
    assert await queue.push_many(x for x in range(2)) != []


async def test_message_ids_are_unique_across_queues(make_queue):
    """Ids never repeat, within a queue or across queues."""
    first, second = make_queue("one"), make_queue("two")
    ids = await first.push_many(range(50)) + await second.push_many(range(50))
    ids.append(await first.push(1))
    assert len(set(ids)) == len(ids)


# -- ack -----------------------------------------------------------------------------------------
async def test_ack_counts_leased_messages_once(queue):
    """ack returns how many were leased; acking twice counts 0 the second time."""
    await queue.push_many([1, 2, 3])
    messages = await queue.pop_many(3)
    assert await queue.ack(messages[0], messages[1]) == 2
    assert await queue.ack(messages[0]) == 0
    assert await queue.ack(messages[2], messages[2]) == 1
    assert await queue.ack() == 0
    stats = await queue.stats()
    assert (stats.ready, stats.pending) == (0, 0)


async def test_ack_by_id(queue):
    """A message can be acknowledged by its id."""
    message_id = await queue.push("x")
    await queue.pop()
    assert await queue.ack(message_id) == 1
    assert await queue.ack(message_id) == 0


async def test_ack_by_id_from_another_queue_object(make_queue):
    """Any queue object of the same queue and group can ack by id."""
    producer, consumer = make_queue("shared"), make_queue("shared")
    message_id = await producer.push("x")
    assert (await consumer.pop()).id == message_id
    assert await producer.ack(message_id) == 1
    assert (await consumer.stats()).pending == 0


async def test_ack_of_unknown_or_foreign_ids_returns_zero(make_queue):
    """Unknown ids, another queue's ids and ready (unleased) ids ack nothing."""
    mine, other = make_queue("mine"), make_queue("other")
    foreign = await other.push("theirs")
    foreign_message = await other.pop()
    ready_id = await mine.push("not popped")
    assert await mine.ack("no-such-id") == 0
    assert await mine.ack("") == 0
    assert await mine.ack("1-0") == 0
    assert await mine.ack(foreign) == 0
    assert await mine.ack(foreign_message) == 0
    assert await mine.ack(ready_id) == 0
    assert (await mine.pop()).id == ready_id
    assert await other.ack(foreign_message) == 1


async def test_ack_rejects_other_types(queue):
    """ack() of something that is neither a Message nor a str raises InvalidArgument."""
    with pytest.raises(kvkit.InvalidArgument):
        await queue.ack(42)
    with pytest.raises(kvkit.InvalidArgument):
        await queue.nack(None)
    with pytest.raises(kvkit.InvalidArgument):
        await queue.extend(b"id")


# -- nack, redelivery, dead letters -------------------------------------------------------------
async def test_nack_redelivers_with_the_delivery_counted(queue):
    """A nacked message comes back with the same id and deliveries == 2."""
    message_id = await queue.push("retry me")
    first = await queue.pop()
    assert await queue.nack(first) is None
    again = await queue.pop()
    assert again.id == message_id
    assert again.payload == "retry me"
    assert again.deliveries == 2
    assert again.enqueued_at == first.enqueued_at
    assert await queue.ack(again) == 1
    assert await queue.ack(first) == 0


async def test_nack_by_id(queue):
    """nack accepts a message id."""
    message_id = await queue.push(1)
    await queue.pop()
    await queue.nack(message_id)
    assert (await queue.pop()).deliveries == 2


async def test_nack_of_unleased_message_does_nothing(queue):
    """nack after ack, or of an unknown id, changes nothing."""
    await queue.push(1)
    message = await queue.pop()
    await queue.ack(message)
    await queue.nack(message)
    await queue.nack("unknown")
    assert await queue.pop() is None


async def test_nack_with_delay(queue):
    """nack(delay=...) hides the message until the delay is over."""
    await queue.push("later")
    message = await queue.pop()
    await queue.nack(message, delay=0.6)
    assert await queue.pop() is None
    stats = await queue.stats()
    assert (stats.delayed, stats.pending, stats.ready) == (1, 0, 0)
    again = await queue.pop(timeout=3)
    assert again is not None and again.id == message.id
    assert again.deliveries == 2


async def test_redelivery_after_visibility_timeout(make_queue):
    """A message not acked within the visibility timeout goes to another consumer."""
    first = make_queue("work", visibility_timeout=VIS)
    second = make_queue("work", visibility_timeout=VIS)
    message_id = await first.push("job")
    taken = await first.pop()
    assert taken.deliveries == 1
    assert await second.pop() is None  # still leased
    await asleep(VIS + 0.15)
    again = await second.pop()
    assert again is not None
    assert again.id == message_id
    assert again.deliveries == 2
    assert await second.ack(again) == 1
    stats = await first.stats()
    assert (stats.ready, stats.pending, stats.dead) == (0, 0, 0)


async def test_reclaimed_and_new_messages_never_exceed_count(make_queue):
    """pop_many(count) returns at most count, also when redeliveries and new messages meet."""
    queue = make_queue("mix", visibility_timeout=0.2)
    ids = await queue.push_many(["a", "b", "c"])
    first = await queue.pop_many(2)
    assert [m.id for m in first] == ids[:2]
    await asleep(0.35)
    second = await queue.pop_many(2)
    assert sorted(m.id for m in second) == sorted(ids[:2])
    assert all(m.deliveries == 2 for m in second)
    third = await queue.pop(timeout=3)
    assert third is not None and third.id == ids[2]
    assert third.deliveries == 1  # handed back unseen: not counted as a delivery
    assert await queue.ack(*second, third) == 3


async def test_blocking_pop_picks_up_an_expired_lease(make_queue):
    """A consumer blocked in pop() receives a message whose lease expires meanwhile."""
    first = make_queue("work", visibility_timeout=VIS)
    second = make_queue("work", visibility_timeout=VIS)
    await first.push("job")
    await first.pop()
    start = time.monotonic()
    again = await second.pop(timeout=5)
    assert again is not None and again.deliveries == 2
    assert time.monotonic() - start < 4


async def test_dead_letter_after_max_deliveries_by_timeout(make_queue):
    """After max_deliveries unacked deliveries the message goes to the dead letters."""
    queue = make_queue("dlq", visibility_timeout=0.2, max_deliveries=2)
    message_id = await queue.push({"poison": True})
    assert (await queue.pop()).deliveries == 1
    await asleep(0.3)
    assert (await queue.pop()).deliveries == 2
    await asleep(0.3)
    assert await queue.pop() is None  # would be delivery 3: dead-lettered instead
    stats = await queue.stats()
    assert (stats.ready, stats.pending, stats.dead) == (0, 0, 1)
    (dead,) = await queue.dead_letters()
    assert dead.id == message_id
    assert dead.payload == {"poison": True}
    assert dead.deliveries == 2
    assert "max_deliveries" in dead.reason


async def test_dead_letter_after_max_deliveries_by_nack(make_queue):
    """Nacking a message that used up its deliveries dead-letters it."""
    queue = make_queue("dlq", max_deliveries=2)
    await queue.push("bad")
    await queue.nack(await queue.pop())
    second = await queue.pop()
    assert second.deliveries == 2
    await queue.nack(second)
    assert await queue.pop() is None
    assert (await queue.stats()).dead == 1
    assert [m.deliveries for m in await queue.dead_letters()] == [2]


async def test_dead_letters_are_listed_oldest_first_and_bounded(make_queue):
    """dead_letters(count) returns at most count, oldest first; they stay in the DLQ."""
    queue = make_queue("dlq", max_deliveries=1)
    ids = await queue.push_many(["a", "b", "c"])
    for message in await queue.pop_many(3):
        await queue.nack(message)
    listed = await queue.dead_letters(2)
    assert [m.id for m in listed] == ids[:2]
    assert len(await queue.dead_letters()) == 3
    with pytest.raises(kvkit.InvalidArgument):
        await queue.dead_letters(0)


async def test_requeue_dead_all(make_queue):
    """requeue_dead() moves every dead letter back with its deliveries reset."""
    queue = make_queue("dlq", max_deliveries=1)
    ids = await queue.push_many([1, 2])
    for message in await queue.pop_many(2):
        await queue.nack(message)
    assert (await queue.stats()).dead == 2
    assert await queue.requeue_dead() == 2
    assert (await queue.stats()).dead == 0
    back = await queue.pop_many(5)
    assert sorted(m.id for m in back) == sorted(ids)
    assert all(m.deliveries == 1 for m in back)
    assert await queue.requeue_dead() == 0


async def test_requeue_dead_by_id(make_queue):
    """requeue_dead(ids) moves only those dead letters."""
    queue = make_queue("dlq", max_deliveries=1)
    ids = await queue.push_many(["a", "b", "c"])
    for message in await queue.pop_many(3):
        await queue.nack(message)
    assert await queue.requeue_dead([ids[1], "unknown"]) == 1
    assert (await queue.pop()).id == ids[1]
    assert [m.id for m in await queue.dead_letters()] == [ids[0], ids[2]]
    assert await queue.requeue_dead([]) == 0
    with pytest.raises(kvkit.InvalidArgument):
        await queue.requeue_dead(ids[0])
    with pytest.raises(kvkit.InvalidArgument):
        await queue.requeue_dead([1])


# -- delays ------------------------------------------------------------------------------------
async def test_delayed_push(queue):
    """push(delay=...) hides the message until it is due; pop(timeout) waits for it."""
    message_id = await queue.push("soon", delay=0.6)
    assert await queue.pop() is None
    assert (await queue.stats()).delayed == 1
    start = time.monotonic()
    message = await queue.pop(timeout=3)
    assert message is not None and message.id == message_id
    assert message.deliveries == 1
    assert 0.1 <= time.monotonic() - start < 2.5
    assert (await queue.stats()).delayed == 0


async def test_delay_accepts_timedelta_and_zero(queue):
    """delay may be a timedelta; 0 means no delay."""
    await queue.push("now", delay=0)
    await queue.push("later", delay=dt.timedelta(seconds=30))
    assert (await queue.pop()).payload == "now"
    assert await queue.pop() is None
    assert (await queue.stats()).delayed == 1


async def test_push_many_with_delay(queue):
    """push_many(delay=...) delays every message."""
    ids = await queue.push_many([1, 2], delay=0.2)
    assert await queue.pop() is None
    await asleep(0.3)
    messages = await queue.pop_many(5)
    assert sorted(m.id for m in messages) == sorted(ids)


# -- leases ------------------------------------------------------------------------------------
async def test_extend_keeps_the_lease(make_queue):
    """extend() renews the lease: no other consumer gets the message meanwhile."""
    holder = make_queue("lease", visibility_timeout=0.8)
    other = make_queue("lease", visibility_timeout=0.8)
    await holder.push("long job")
    message = await holder.pop()
    await asleep(0.5)
    assert await holder.extend(message) is True
    await asleep(0.4)
    assert await other.pop() is None  # 0.9 s after the pop, but renewed at 0.5 s
    await asleep(0.5)
    again = await other.pop()
    assert again is not None and again.id == message.id and again.deliveries == 2
    assert await holder.extend(message) is False  # taken over by the other consumer


async def test_extend_with_seconds_and_by_id(make_queue):
    """extend(id, seconds) sets the remaining lease; seconds are validated."""
    queue = make_queue("lease", visibility_timeout=5)
    message_id = await queue.push(1)
    await queue.pop()
    assert await queue.extend(message_id, 0.1) is True
    await asleep(0.25)
    # On Redis expired leases are searched for at most every visibility_timeout / 10.
    again = await queue.pop(timeout=3)
    assert again is not None and again.deliveries == 2
    for bad in (0, -1, 6, float("nan"), "1"):
        with pytest.raises(kvkit.InvalidArgument):
            await queue.extend(again, bad)


async def test_extend_of_unleased_message_is_false(queue):
    """extend after ack, or of an unknown id, returns False."""
    await queue.push(1)
    message = await queue.pop()
    await queue.ack(message)
    assert await queue.extend(message) is False
    assert await queue.extend("unknown") is False


async def test_message_methods(queue):
    """Message.ack(), .nack() and .extend() act on the queue that delivered it."""
    await queue.push("x")
    message = await queue.pop()
    assert await message.extend() is True
    await message.nack()
    again = await queue.pop()
    assert again.deliveries == 2
    assert await again.ack() == 1
    assert await again.extend() is False
    detached = kvkit.Message("id", 1, "jobs", 1, 0.0)
    with pytest.raises(kvkit.InvalidArgument):
        detached.ack()


# -- process() -----------------------------------------------------------------------------------
async def test_process_acks_on_success(queue):
    """The process() block acks when it exits normally."""
    await queue.push("work")
    async with queue.process() as message:
        assert message.payload == "work"
    stats = await queue.stats()
    assert (stats.ready, stats.pending) == (0, 0)


async def test_process_nacks_and_reraises_on_error(queue):
    """An exception in the process() block gives the message back and propagates."""
    message_id = await queue.push("work")
    with pytest.raises(RuntimeError, match="boom"):
        async with queue.process() as message:
            assert message.id == message_id
            raise RuntimeError("boom")
    again = await queue.pop()
    assert again.id == message_id and again.deliveries == 2


async def test_process_yields_none_when_empty(queue):
    """process(timeout) yields None when no message arrives in time."""
    async with queue.process(timeout=0.1) as message:
        assert message is None
    with pytest.raises(kvkit.InvalidArgument):
        queue.process(timeout=-1)


# -- consume() ---------------------------------------------------------------------------------
async def test_consume_max_messages(queue):
    """consume(max_messages=N) handles exactly N messages and leaves the rest."""
    await queue.push_many(range(10))
    seen = []

    async def handler(message):
        seen.append(message.payload)

    assert await queue.consume(handler, batch=3, max_messages=4) == 4
    assert seen == [0, 1, 2, 3]
    stats = await queue.stats()
    assert (stats.ready, stats.pending) == (6, 0)
    assert await queue.consume(handler, max_messages=0) == 0


async def test_consume_stops_on_event_and_finishes_the_message_in_hand(queue):
    """Setting stop ends consume after the current message; the rest go back."""
    await queue.push_many(range(10))
    stop = AsyncEvent()
    seen = []

    async def handler(message):
        seen.append(message.payload)
        if message.payload == 2:
            stop.set()

    assert await queue.consume(handler, batch=5, stop=stop) == 3
    assert seen == [0, 1, 2]
    stats = await queue.stats()
    assert (stats.ready, stats.pending) == (7, 0)
    rest = await queue.pop_many(10)
    # Given-back messages are appended again: the order may change (at-least-once).
    assert sorted(m.payload for m in rest) == [3, 4, 5, 6, 7, 8, 9]
    assert all(m.deliveries == 1 for m in rest)  # given back unprocessed: not counted


async def test_consume_stop_event_ends_an_idle_loop(queue):
    """A stop event already set ends consume at once."""
    stop = AsyncEvent()
    stop.set()

    async def handler(message):
        raise AssertionError("no message expected")

    assert await queue.consume(handler, stop=stop) == 0


async def test_consume_handler_error_nacks_with_backoff_and_logs(queue, caplog):
    """A failing handler's message is nacked with a delay and logged; it is not lost."""
    message_id = await queue.push({"secret": "s3cr3t"})

    async def handler(message):
        raise ValueError("handler broke")

    with caplog.at_level(logging.ERROR, logger="kvkit.queue"):
        assert await queue.consume(handler, max_messages=1) == 1
    stats = await queue.stats()
    assert (stats.delayed, stats.pending, stats.dead) == (1, 0, 0)
    records = [r for r in caplog.records if r.name == "kvkit.queue"]
    assert records and message_id in records[0].getMessage()
    assert records[0].exc_info is not None
    assert "s3cr3t" not in records[0].getMessage()


async def test_consume_sync_handler_and_concurrency(make_queue):
    """consume with concurrency > 1 handles every message exactly once."""
    queue = make_queue("many")
    ids = await queue.push_many(range(40))
    seen = []

    def handler(message):
        seen.append(message.id)

    assert await queue.consume(handler, batch=4, max_messages=40, concurrency=4) == 40
    assert sorted(seen) == sorted(ids)
    stats = await queue.stats()
    assert (stats.ready, stats.pending) == (0, 0)


async def test_consume_renews_leases_of_slow_handlers(make_queue):
    """A handler running longer than the visibility timeout keeps its lease."""
    queue = make_queue("slow", visibility_timeout=0.6)
    other = make_queue("slow", visibility_timeout=0.6)
    await queue.push("slow job")
    stolen = []

    async def handler(message):
        for _ in range(3):
            await asleep(0.3)
            stolen.append(await other.pop())

    assert await queue.consume(handler, max_messages=1) == 1
    assert stolen == [None, None, None]
    stats = await queue.stats()
    assert (stats.ready, stats.pending, stats.delayed) == (0, 0, 0)


async def test_consume_validates_arguments(queue):
    """consume rejects bad arguments before doing anything."""

    async def handler(message):
        return None

    with pytest.raises(kvkit.InvalidArgument):
        await queue.consume("not callable")
    for kwargs in (
        {"batch": 0},
        {"concurrency": 0},
        {"max_messages": -1},
        {"stop": object()},
        {"batch": True},
    ):
        with pytest.raises(kvkit.InvalidArgument):
            await queue.consume(handler, **kwargs)


# -- stats, purge --------------------------------------------------------------------------------
async def test_stats(make_queue):
    """stats() counts ready, pending, delayed and dead messages and consumers."""
    queue = make_queue("stats", max_deliveries=1)
    empty = await queue.stats()
    assert empty == kvkit.QueueStats(0, 0, 0, 0, 0, None)
    await queue.push_many([1, 2, 3, 4])
    await queue.push("later", delay=60)
    held = await queue.pop_many(2)
    await queue.nack(held[1])  # max_deliveries=1: dead
    stats = await queue.stats()
    assert (stats.ready, stats.pending, stats.delayed, stats.dead) == (2, 1, 1, 1)
    assert stats.consumers == 1
    assert stats.oldest_pending_s is not None and 0 <= stats.oldest_pending_s < 5
    assert stats.to_dict()["ready"] == 2
    await make_queue("stats").pop()
    assert (await queue.stats()).consumers == 2


async def test_purge(queue):
    """purge() deletes ready, in-flight and delayed messages; dead letters only on request."""
    await queue.push_many([1, 2, 3])
    await queue.push("later", delay=60)
    leased = await queue.pop()
    await queue.nack(await queue.pop(), delay=60)
    assert await queue.purge() == 4
    stats = await queue.stats()
    assert (stats.ready, stats.pending, stats.delayed) == (0, 0, 0)
    assert await queue.ack(leased) == 0
    await queue.push("after purge")
    assert (await queue.pop()).payload == "after purge"
    assert await queue.purge() == 1


async def test_purge_dead(make_queue):
    """purge(dead=True) also empties the dead-letter queue."""
    queue = make_queue("dlq", max_deliveries=1)
    await queue.push_many([1, 2])
    await queue.nack(await queue.pop())
    assert await queue.purge() == 1
    assert (await queue.stats()).dead == 1
    await queue.push(3)
    assert await queue.purge(dead=True) == 2
    assert (await queue.stats()).dead == 0


async def test_expire_keys_makes_a_throwaway_queue(client, backend, make_queue):
    """expire_keys(ttl) gives every key of the queue, and named push records, that TTL."""
    queue = make_queue("throwaway")
    with pytest.raises(kvkit.InvalidArgument):
        await queue.expire_keys(0)
    with pytest.raises(kvkit.InvalidArgument):
        await queue.expire_keys(30, message_ids=[b"not text"])
    ids = [await queue.push("short-lived"), await queue.push("later", delay=60)]
    message = await queue.pop()
    await queue.expire_keys(30, message_ids=ids)
    # The queue keeps working until the keys expire.
    await queue.ack(message)
    if backend == "memory":
        return  # an in-process queue ends with the process; nothing to expire
    redis = client.redis("queues")
    keys = [key async for key in redis.scan_iter(match=client.settings.prefix + ":queue:*")]
    assert len(keys) >= 5  # stream, ids, delayed, two push records at least
    for key in keys:
        assert 0 < await redis.pttl(key) <= 30_000, key


# -- dedupe --------------------------------------------------------------------------------------
async def test_dedupe_id_enqueues_once(queue):
    """A second push with the same dedupe_id returns the first id and enqueues nothing."""
    first = await queue.push("order 1", dedupe_id="order-1")
    assert await queue.push("order 1 again", dedupe_id="order-1") == first
    other = await queue.push("order 2", dedupe_id="order-2")
    assert other != first
    messages = await queue.pop_many(10)
    assert [m.payload for m in messages] == ["order 1", "order 2"]
    await queue.ack(*messages)
    assert await queue.push("order 1 later", dedupe_id="order-1") == first
    assert await queue.pop() is None


async def test_dedupe_is_forgotten_after_purge(queue):
    """purge() forgets dedupe ids."""
    first = await queue.push(1, dedupe_id="d")
    await queue.purge()
    assert await queue.push(1, dedupe_id="d") != first
    assert (await queue.stats()).ready == 1


async def test_dedupe_window_expires(make_queue):
    """After dedupe_window seconds the same dedupe_id enqueues again."""
    queue = make_queue("window", dedupe_window=0.2)
    first = await queue.push(1, dedupe_id="d")
    await asleep(0.3)
    assert await queue.push(1, dedupe_id="d") != first


# -- bad input -----------------------------------------------------------------------------------
async def test_unserializable_payload_enqueues_nothing(queue):
    """A payload the codec rejects raises SerializationError; nothing is enqueued."""
    with pytest.raises(kvkit.SerializationError):
        await queue.push(object())
    with pytest.raises(kvkit.SerializationError):
        await queue.push_many([1, object(), 3])
    with pytest.raises(kvkit.SerializationError):
        await queue.push(float("nan"), delay=1)
    stats = await queue.stats()
    assert (stats.ready, stats.delayed) == (0, 0)


@pytest.mark.parametrize("name", ["", "a{b", "b}", 7, None, "x" * 1025])
async def test_bad_queue_name(client, name):
    """Invalid queue names raise InvalidArgument."""
    with pytest.raises(kvkit.InvalidArgument):
        client.queue(name)


@pytest.mark.parametrize(
    "options",
    [
        {"visibility_timeout": 0},
        {"visibility_timeout": -1},
        {"visibility_timeout": math.inf},
        {"max_deliveries": 0},
        {"max_deliveries": 1.5},
        {"maxlen": 0},
        {"group": ""},
        {"consumer": ""},
        {"dedupe_window": 0},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
async def test_bad_queue_options(client, options):
    """Invalid options raise InvalidArgument."""
    with pytest.raises(kvkit.InvalidArgument):
        client.queue("jobs", **options)


async def test_bad_arguments(queue):
    """Bad count, timeout, delay and dedupe_id raise InvalidArgument; nothing is sent."""
    for count in (0, -1, 1.5, True, "2"):
        with pytest.raises(kvkit.InvalidArgument):
            await queue.pop_many(count)
    for timeout in (-1, float("nan"), "1", True):
        with pytest.raises(kvkit.InvalidArgument):
            await queue.pop(timeout)
    for delay in (-1, float("nan"), math.inf, "1"):
        with pytest.raises(kvkit.InvalidArgument):
            await queue.push(1, delay=delay)
        with pytest.raises(kvkit.InvalidArgument):
            await queue.nack("x", delay=delay)
    for dedupe_id in ("", 5):
        with pytest.raises(kvkit.InvalidArgument):
            await queue.push(1, dedupe_id=dedupe_id)
    for payloads in ("abc", 5, {"a": 1}):
        with pytest.raises(kvkit.InvalidArgument):
            await queue.push_many(payloads)
    assert (await queue.stats()).ready == 0


class _Picky:
    """A serializer that writes bytes it cannot read back for the payload "poison"."""

    def dumps(self, value):
        if value == "poison":
            return b"\xffpoison"
        return json.dumps(value).encode()

    def loads(self, data):
        if data.startswith(b"\xff"):
            raise ValueError("unreadable")
        return json.loads(data)


async def test_undecodable_entry_is_dead_lettered_and_consumer_continues(request, backend):
    """An entry that cannot be decoded goes to the DLQ with the reason; pop goes on."""
    settings = settings_for(request, backend)
    async with kvkit.AsyncClient(settings=settings, serializer=_Picky()) as client:
        queue = client.queue("picky")
        await queue.push_many(["ok 1", "poison", "ok 2"])
        messages = await queue.pop_many(10)
        assert [m.payload for m in messages] == ["ok 1", "ok 2"]
        (dead,) = await queue.dead_letters()
        assert dead.payload == b"\xffpoison"
        assert "undecodable" in dead.reason
        await queue.push("poison")
        assert await queue.pop() is None
        assert (await queue.stats()).dead == 2
        await queue.purge(dead=True)


async def test_malformed_stream_entry_is_dead_lettered(client, backend, make_queue):
    """A stream entry written by someone else without a payload goes to the DLQ."""
    if backend == "memory":
        pytest.skip("only Redis streams can hold foreign entries")
    queue = make_queue("foreign")
    await queue.push("good")
    redis = client.redis("queues")
    await redis.xadd(queue.key + ":stream", {"something": "else"})
    messages = await queue.pop_many(10)
    assert [m.payload for m in messages] == ["good"]
    (dead,) = await queue.dead_letters()
    assert "malformed" in dead.reason


# -- options ------------------------------------------------------------------------------------
async def test_maxlen_drops_the_oldest(make_queue):
    """maxlen bounds the queue: the oldest messages are dropped."""
    queue = make_queue("bounded", maxlen=3)
    ids = await queue.push_many(range(5))
    await queue.push(5)
    assert (await queue.stats()).ready == 3
    messages = await queue.pop_many(10)
    assert [m.payload for m in messages] == [3, 4, 5]
    assert messages[0].id == ids[3]


async def test_consumer_names(make_queue):
    """Each queue object has its own consumer name unless one is given."""
    first, second = make_queue("c"), make_queue("c")
    assert first.consumer != second.consumer
    assert first.consumer == first.consumer
    assert make_queue("c", consumer="worker-1").consumer == "worker-1"


async def test_groups_fan_out(make_queue):
    """Two groups each receive every message; it is deleted once both acknowledged."""
    producer = make_queue("events", group="a")
    other = make_queue("events", group="b")
    await producer.pop()  # creates group a
    await other.pop()  # creates group b
    message_id = await producer.push("event")
    got_a, got_b = await producer.pop(), await other.pop()
    assert got_a.id == got_b.id == message_id
    assert await producer.ack(got_a) == 1
    assert (await other.stats()).pending == 1
    assert await other.ack(got_b) == 1
    for queue in (producer, other):
        stats = await queue.stats()
        assert (stats.ready, stats.pending) == (0, 0)
