"""Queue options, durations, group names, stats and bad payloads alike on every backend.

Issue 11: unknown options and out-of-range durations are ``InvalidArgument`` up front
(#4, #5); groups named like internal fields keep their own leases (#3);
``stats().consumers`` means the same everywhere (#35); an undecodable message in a batch is
dead-lettered alone (#2, the part every backend shares).
"""

from __future__ import annotations

import json
import math
from datetime import timedelta

import pytest

import kvkit
from kvkit._compat import AsyncEvent, AsyncWorkers, asleep
from kvkit._ttl import MAX_SECONDS
from tests.backends import settings_for

VIS = 0.3
TOO_LONG = [MAX_SECONDS + 1, 1e16, 1e300, timedelta(days=365 * 101)]


# -- #5: options -------------------------------------------------------------------------------
@pytest.mark.parametrize("option", ["bogus", "prefix", "codec", "where", "driver"])
async def test_unknown_option_is_invalid_argument(client, option):
    """An unknown option (also an internal parameter's name) names itself and the valid ones."""
    with pytest.raises(kvkit.InvalidArgument) as info:
        client.queue("jobs", **{option: 1})
    message = str(info.value)
    assert repr(option) in message
    assert "visibility_timeout" in message and "max_deliveries" in message


@pytest.mark.parametrize(
    "options",
    [
        {"max_deliveries": True},
        {"max_deliveries": "3"},
        {"max_deliveries": -1},
        {"maxlen": 2.0},
        {"maxlen": -5},
        {"group": 5},
        {"group": "x" * 1025},
        {"consumer": b"worker"},
        {"visibility_timeout": "30"},
        {"visibility_timeout": True},
        {"dedupe_window": math.nan},
    ],
    ids=lambda o: "-".join(f"{k}={v!r}"[:30] for k, v in o.items()),
)
async def test_bad_option_types_and_ranges(client, options):
    """Options of the wrong type or range fail at client.queue(), not at first use."""
    with pytest.raises(kvkit.InvalidArgument):
        client.queue("jobs", **options)


@pytest.mark.parametrize("name", [b"jobs", 1.5, "x" * 1025, "a{b}"])
async def test_bad_name(client, name):
    """A bad queue name is InvalidArgument at client.queue()."""
    with pytest.raises(kvkit.InvalidArgument):
        client.queue(name)


# -- #4: durations -----------------------------------------------------------------------------
@pytest.mark.parametrize("seconds", TOO_LONG, ids=str)
@pytest.mark.parametrize("option", ["visibility_timeout", "dedupe_window"])
async def test_option_durations_are_bounded(client, option, seconds):
    """Durations beyond 100 years fail at construction, with the same message everywhere."""
    with pytest.raises(kvkit.InvalidArgument, match=r"at most \d+ seconds \(100 years\)"):
        client.queue("jobs", **{option: seconds})


@pytest.mark.parametrize("seconds", TOO_LONG, ids=str)
async def test_call_durations_are_bounded(make_queue, seconds):
    """delay (push, push_many, nack) and pop timeouts beyond 100 years: InvalidArgument."""
    queue = make_queue(visibility_timeout=VIS)
    with pytest.raises(kvkit.InvalidArgument, match=r"at most \d+ seconds"):
        await queue.push(1, delay=seconds)
    with pytest.raises(kvkit.InvalidArgument, match=r"at most \d+ seconds"):
        await queue.push_many([1], delay=seconds)
    with pytest.raises(kvkit.InvalidArgument, match=r"at most \d+ seconds"):
        await queue.pop(timeout=seconds)
    await queue.push(1)
    message = await queue.pop()
    with pytest.raises(kvkit.InvalidArgument, match=r"at most \d+ seconds"):
        await queue.nack(message, delay=seconds)
    with pytest.raises(kvkit.InvalidArgument):
        await queue.extend(message, seconds)
    assert await message.ack() == 1
    assert (await queue.stats()).delayed == 0


async def test_longest_durations_are_honoured(make_queue):
    """100 years of delay stays delayed and 100 years of lease is usable, on every backend."""
    queue = make_queue(visibility_timeout=MAX_SECONDS, dedupe_window=MAX_SECONDS)
    await queue.push("late", delay=MAX_SECONDS)
    await queue.push_many(["later"], delay=timedelta(seconds=MAX_SECONDS))
    assert await queue.pop() is None
    assert (await queue.stats()).delayed == 2
    await queue.push("now", dedupe_id="d")
    message = await queue.pop()
    assert message.payload == "now"
    assert await queue.extend(message, MAX_SECONDS)
    await queue.nack(message, delay=MAX_SECONDS)
    stats = await queue.stats()
    assert (stats.ready, stats.pending, stats.delayed) == (0, 0, 3)


async def test_infinite_timeout_still_means_forever(make_queue):
    """math.inf (like None) waits for a message rather than being rejected."""
    queue = make_queue()

    async def push_later():
        await asleep(0.05)
        await queue.push("x")

    pusher = AsyncWorkers()
    pusher.start(push_later)
    message = await queue.pop(timeout=math.inf)
    await pusher.join()
    assert message.payload == "x"


async def test_batch_sizes_are_bounded(make_queue):
    """pop_many counts and consume batches above MAX_BATCH are InvalidArgument everywhere."""
    from kvkit._queue_base import MAX_BATCH

    queue = make_queue()
    await queue.push(1)
    for count in (MAX_BATCH + 1, 2**53, 2**63, 10**30):
        with pytest.raises(kvkit.InvalidArgument, match="at most"):
            await queue.pop_many(count)
        with pytest.raises(kvkit.InvalidArgument, match="at most"):
            await queue.consume(lambda m: None, batch=count)
    assert [m.payload for m in await queue.pop_many(MAX_BATCH)] == [1]


# -- #3: group names ---------------------------------------------------------------------------
async def test_groups_named_like_internal_fields_keep_their_leases(make_queue):
    """Groups g, g:next, next:g and cursor:g each get their expired lease back every round."""
    groups = ["g", "g:next", "next:g", "cursor:g"]
    queues = [make_queue("fields", group=g, visibility_timeout=VIS) for g in groups]
    for queue in queues:
        assert await queue.pop() is None  # creates the group
    await queues[0].push("m")
    for round_ in range(1, 4):
        for queue in queues:
            message = await queue.pop()
            assert message is not None, (queue.group, round_)
            assert message.deliveries == round_
        await asleep(VIS + 0.1)  # every lease expires
    for queue in reversed(queues):
        message = await queue.pop(timeout=VIS * 3)
        assert message is not None and message.deliveries == 4
        assert await message.ack() == 1


# -- #35: consumers ----------------------------------------------------------------------------
async def test_consumers_count_the_ones_holding_messages(make_queue):
    """stats().consumers counts consumers holding messages; empty pops never count."""
    idle, worker, other = make_queue(), make_queue(), make_queue()
    assert await idle.pop() is None
    assert await idle.pop(timeout=0.05) is None
    assert (await idle.stats()).consumers == 0
    await idle.push_many([1, 2, 3])
    first = await worker.pop()
    assert (await idle.stats()).consumers == 1
    second = await other.pop_many(2)
    assert (await idle.stats()).consumers == 2
    assert await worker.pop() is None  # an empty pop by a holder changes nothing
    assert (await idle.stats()).consumers == 2
    await first.ack()
    assert (await idle.stats()).consumers == 1
    await other.nack(second[0])
    await other.ack(second[1])
    assert (await idle.stats()).consumers == 0


# -- #2: a bad message in a batch --------------------------------------------------------------
class _Strict:
    """A serializer whose loads rejects payloads that start with 0xff."""

    def dumps(self, value):
        data = json.dumps(value).encode()
        return b"\xff" + data if value == "poison" else data

    def loads(self, data):
        if data.startswith(b"\xff"):
            raise UnicodeDecodeError("utf-8", data, 0, 1, "hostile")
        return json.loads(data)


async def test_undecodable_message_is_dead_lettered_alone(request, backend):
    """6 good messages around 1 undecodable one: a consumer handles 6, 1 dead letter."""
    settings = settings_for(request, backend)
    async with kvkit.AsyncClient(settings=settings, serializer=_Strict()) as client:
        queue = client.queue("strict", visibility_timeout=VIS)
        await queue.push_many([0, 1, 2])
        await queue.push("poison")
        await queue.push_many([3, 4, 5])
        handled = []
        stop = AsyncEvent()

        def handler(message):
            handled.append(message.payload)
            if len(handled) == 6:
                stop.set()

        assert await queue.consume(handler, batch=4, stop=stop) == 6
        assert sorted(handled) == [0, 1, 2, 3, 4, 5]
        (dead,) = await queue.dead_letters()
        assert dead.payload == b'\xff"poison"' and "undecodable" in dead.reason
        stats = await queue.stats()
        assert (stats.ready, stats.pending, stats.dead) == (0, 0, 1)
        await queue.purge(dead=True)
