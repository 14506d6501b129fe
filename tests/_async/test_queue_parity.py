"""Queue behaviour that every backend must share (issue 11, findings 28-33).

Each test runs on memory, fakeredis, real Redis and a real Cluster. Leases are made to
expire with ``extend(message, seconds)`` (a short lease from now) rather than with a short
visibility timeout, so that the messages under test expire when the test says so and the
others stay leased long after: the waits below are many times the short leases, and the
long visibility timeout leaves a wide margin on a loaded machine.
"""

from __future__ import annotations

from kvkit._compat import asleep

# The visibility timeout of the queues below: long, so that only what a test expires does.
LONG = 5.0
# A lease that is meant to expire, and a wait that outlasts it (and on Redis the scan
# interval between two reclaim passes, LONG / 10).
SHORT = 0.05
WAIT = 0.8


async def _expire(queue, *messages):
    """Make the leases of ``messages`` run out, then wait until they have."""
    for message in messages:
        assert await queue.extend(message, SHORT)
    await asleep(WAIT)


def _payloads(messages):
    return [message.payload for message in messages]


# -- 28: delayed batches keep their order ------------------------------------------------------
async def test_delayed_push_many_is_delivered_in_push_order(make_queue):
    """push_many(items, delay=...) delivers the items in the order given (#28)."""
    queue = make_queue("delayed-order", visibility_timeout=LONG)
    items = list(range(40))
    await queue.push_many(items, delay=0.05)
    await asleep(0.3)
    got = []
    for _ in range(10):  # bounded: the batch may come in more than one pop
        got += _payloads(await queue.pop_many(len(items), timeout=1))
        if len(got) >= len(items):
            break
    assert got == items


async def test_delayed_pushes_due_together_keep_push_order(make_queue):
    """Delayed pushes and push_many batches due in the same ms come out in push order."""
    queue = make_queue("delayed-order-2", visibility_timeout=LONG)
    await queue.push("first", delay=0.05)
    await queue.push_many(["second", "third"], delay=0.05)
    await queue.push("fourth", delay=0.05)
    await asleep(0.3)
    assert _payloads(await queue.pop_many(10, timeout=1)) == ["first", "second", "third", "fourth"]


# -- 29: ready counts what can be delivered ----------------------------------------------------
async def test_ready_counts_deliverable_messages_after_maxlen_trimmed_a_lease(make_queue):
    """maxlen trimming an in-flight message leaves ready = the deliverable messages (#29)."""
    queue = make_queue("trimmed", visibility_timeout=LONG, maxlen=2)
    await queue.push("a")
    await queue.push("b")
    a = await queue.pop()
    assert a.payload == "a"
    await queue.push("c")  # trims "a": dropped like a purged message, lease and all
    stats = await queue.stats()
    assert (stats.ready, stats.pending) == (2, 0)
    assert _payloads(await queue.pop_many(5)) == ["b", "c"]
    stats = await queue.stats()
    assert (stats.ready, stats.pending) == (0, 2)
    assert await queue.ack(a) == 0
    assert not await queue.extend(a)


async def test_lease_trimmed_by_a_promotion_is_not_redelivered(make_queue):
    """Due delayed messages are promoted (and trim) before expired leases are reclaimed."""
    queue = make_queue("trim-on-promote", visibility_timeout=LONG, maxlen=2)
    await queue.push("a")
    a = await queue.pop()
    await queue.push_many(["b", "c"], delay=0.05)
    await _expire(queue, a)  # "b" and "c" are due by now: promoting them trims "a"
    assert _payloads(await queue.pop_many(3)) == ["b", "c"]
    assert await queue.ack(a) == 0
    assert (await queue.stats()).pending == 2


# -- 30: new messages a pop had no room for stay ready -----------------------------------------
async def test_message_read_beyond_count_stays_ready(make_queue):
    """A pop that reclaims leases leaves the new message it has no room for ready (#30)."""
    queue = make_queue("surplus", visibility_timeout=LONG)
    await queue.push_many(["a", "b", "c"])
    await _expire(queue, *await queue.pop_many(2))
    again = await queue.pop_many(2)
    assert [(m.payload, m.deliveries) for m in again] == [("a", 2), ("b", 2)]
    stats = await queue.stats()
    assert (stats.ready, stats.pending) == (1, 2)
    assert stats.oldest_pending_s is not None and stats.oldest_pending_s < LONG
    await queue.ack(*again)
    message = await queue.pop()
    assert (message.payload, message.deliveries) == ("c", 1)
    assert (await queue.stats()).ready == 0


# -- 31: expired leases before new messages ----------------------------------------------------
async def test_expired_lease_behind_the_reclaim_cursor_beats_new_messages(make_queue):
    """A lease that expires behind the reclaim cursor comes back before a new message (#31)."""
    queue = make_queue("cursor", visibility_timeout=LONG)
    await queue.push_many(["x", "a", "b", "c"])
    x, a, b = await queue.pop_many(3)
    await _expire(queue, a)
    # Reclaims "a" (the cursor stops before "b", still leased); "c" does not fit.
    assert _payloads(await queue.pop_many(1)) == ["a"]
    await queue.ack(a)
    await _expire(queue, x)
    assert _payloads(await queue.pop_many(1)) == ["x"]
    await queue.ack(x)
    message = await queue.pop()
    assert (message.payload, message.deliveries) == ("c", 1)
    await queue.ack(message, b)


# -- 32: one dead-lettering rule ---------------------------------------------------------------
async def test_a_pop_handles_at_most_count_expired_leases(make_queue):
    """A pop dead-letters only the over-limit leases among the count it looks at (#32)."""
    queue = make_queue("limit", visibility_timeout=LONG, max_deliveries=1)
    await queue.push_many(["a", "b", "c"])
    await _expire(queue, *await queue.pop_many(3))
    await queue.push("d")
    # Looks at "a" and "b" (dead-lettered: delivered once already), fills up with "d".
    assert _payloads(await queue.pop_many(2)) == ["d"]
    assert _payloads(await queue.dead_letters()) == ["a", "b"]
    stats = await queue.stats()
    assert (stats.ready, stats.pending, stats.dead) == (0, 2, 2)
    assert await queue.pop_many(2) == []  # looks at "c": dead-lettered
    assert _payloads(await queue.dead_letters()) == ["a", "b", "c"]
    stats = await queue.stats()
    assert (stats.ready, stats.pending, stats.dead) == (0, 1, 3)


async def test_a_blocking_pop_keeps_dead_lettering_until_the_timeout(make_queue):
    """A waiting pop goes on past a batch of over-limit leases to the rest of them."""
    queue = make_queue("limit-wait", visibility_timeout=LONG, max_deliveries=1)
    await queue.push_many(["a", "b", "c"])
    await _expire(queue, *await queue.pop_many(3))
    assert await queue.pop(timeout=0.5) is None
    assert _payloads(await queue.dead_letters()) == ["a", "b", "c"]
    assert (await queue.stats()).pending == 0


# -- 33: redelivery order after extend() -------------------------------------------------------
async def test_expired_leases_come_back_in_stream_order_whatever_extend_did(make_queue):
    """Leases that expired come back in stream order, not in the order they expired (#33)."""
    queue = make_queue("extended", visibility_timeout=LONG)
    await queue.push_many(["a", "b", "c"])
    a, b, c = await queue.pop_many(3)
    # Expire "c" first and "a" last: the order stays a, b, c.
    for message, seconds in ((c, SHORT), (b, 2 * SHORT), (a, 3 * SHORT)):
        assert await queue.extend(message, seconds)
    await asleep(WAIT)
    assert _payloads(await queue.pop_many(2)) == ["a", "b"]
    assert _payloads(await queue.pop_many(2)) == ["c"]


async def test_a_given_back_message_goes_to_the_end_of_the_redeliveries(make_queue):
    """nack() moves a message behind the others; its expired lease comes back there."""
    queue = make_queue("nacked", visibility_timeout=LONG)
    await queue.push_many(["a", "b"])
    first, b = await queue.pop_many(2)
    await queue.nack(first)
    a = await queue.pop()
    assert (a.payload, a.deliveries) == ("a", 2)
    await _expire(queue, a, b)
    assert [(m.payload, m.deliveries) for m in await queue.pop_many(2)] == [("b", 2), ("a", 3)]
