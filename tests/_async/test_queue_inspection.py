"""What the dashboard and the exporters read from queues: throughput, ages, dead letters."""

from __future__ import annotations

import pytest

import kvkit


async def test_throughput_counts_pushed_and_acknowledged(make_queue):
    """throughput() counts pushes (delayed ones too) and acks in the current bucket."""
    queue = make_queue("flow")
    await queue.push_many([1, 2, 3])
    await queue.push(4, delay=60)
    await queue.push(5, dedupe_id="once")
    await queue.push(6, dedupe_id="once")  # a dedupe hit enqueues nothing
    messages = await queue.pop_many(2)
    assert await queue.ack(*messages) == 2
    assert await queue.ack(*messages) == 0  # acked twice counts once
    series = await queue.throughput(60)
    assert len(series) == 12
    assert [b["t"] for b in series] == sorted(b["t"] for b in series)
    assert sum(b["in"] for b in series) == 5
    assert sum(b["out"] for b in series) == 2
    with pytest.raises(kvkit.InvalidArgument):
        await queue.throughput(0)


async def test_oldest_ready_age(make_queue):
    """oldest_ready_s is the wait of the first message the group has not read; None if none."""
    queue = make_queue("ages")
    assert (await queue.stats()).oldest_ready_s is None
    await queue.push_many([1, 2])
    stats = await queue.stats()
    assert stats.oldest_ready_s is not None and 0 <= stats.oldest_ready_s < 5
    await queue.pop_many(2)
    assert (await queue.stats()).oldest_ready_s is None  # in flight, not ready
    await queue.push(3, delay=60)
    assert (await queue.stats()).oldest_ready_s is None  # delayed is not ready


async def test_dead_letter_keeps_the_handler_error(make_queue):
    """A message that dies after its handler raised keeps that error as its reason."""
    queue = make_queue("failing", max_deliveries=1)
    await queue.push({"to": "ada"})

    def handler(message):
        raise ValueError("smtp said no")

    assert await queue.consume(handler, max_messages=1) == 1
    (dead,) = await queue.dead_letters()
    assert dead.reason == "max_deliveries (1) exceeded; last error: ValueError: smtp said no"
    assert dead.deliveries == 1


async def test_process_block_error_is_the_reason(make_queue):
    """process(): the block's exception is kept when the message is dead-lettered."""
    queue = make_queue("blocks", max_deliveries=1)
    await queue.push(1)
    with pytest.raises(KeyError):
        async with queue.process() as message:
            assert message is not None
            raise KeyError("missing")
    (dead,) = await queue.dead_letters()
    assert dead.reason is not None and dead.reason.endswith("last error: KeyError: 'missing'")


async def test_delete_dead(make_queue):
    """delete_dead(ids) deletes those dead letters only; delete_dead() all of them."""
    queue = make_queue("graveyard", max_deliveries=1)
    await queue.push_many([1, 2, 3])
    for message in await queue.pop_many(3):
        await message.nack()
    dead = await queue.dead_letters()
    assert len(dead) == 3
    assert await queue.delete_dead([dead[0].id, "unknown"]) == 1
    assert [m.id for m in await queue.dead_letters()] == [m.id for m in dead[1:]]
    assert await queue.delete_dead([]) == 0
    assert await queue.delete_dead() == 2
    assert (await queue.stats()).dead == 0
    with pytest.raises(kvkit.InvalidArgument):
        await queue.delete_dead("an-id")


async def test_queue_names_finds_queues_under_the_prefix(client, request, backend):
    """queue_names() lists queues with messages, delayed or dead ones, and known ones."""
    await client.queue("ready-one").push(1)
    await client.queue("delayed-one").push(1, delay=60)
    dying = client.queue("dead-one", max_deliveries=1)
    await dying.push(1)
    await (await dying.pop()).nack()
    client.queue("known-only")  # opened, never used
    names = await client.queue_names()
    assert {"ready-one", "delayed-one", "dead-one", "known-only"} <= set(names)
    assert names == sorted(names)
    assert len(await client.queue_names(limit=2)) == 2
    assert await client.queue_names(discover=False) == sorted(
        ["ready-one", "delayed-one", "dead-one", "known-only"]
    )
    with pytest.raises(kvkit.InvalidArgument):
        await client.queue_names(limit=0)
    for name in names:
        await client.queue(name).purge(dead=True)
