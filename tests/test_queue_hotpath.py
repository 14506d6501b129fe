"""The Redis queue driver's fast paths keep the queue's semantics.

A busy consumer skips the reclaim script for a while (``_SKIP_MAX_MS``); fresh pushes are
stored as ``id`` + ``payload`` only; acks send their receipts joined; messages are built
without the generated ``__init__``. None of that may change what a consumer observes.
"""

from __future__ import annotations

import time
import uuid

import pytest

import kvkit
from kvkit._queue_types import Message, new_message
from kvkit._sync.backends import redis_queue

REDIS_BACKENDS = [
    pytest.param("fakeredis", id="fakeredis"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


@pytest.fixture(params=REDIS_BACKENDS)
def client(request):
    """A sync client on fakeredis or the session's real Redis, with its own prefix."""
    url = "fakeredis://" if request.param == "fakeredis" else request.getfixturevalue("redis_url")
    with kvkit.Client(settings=kvkit.Settings(url=url, prefix="t" + uuid.uuid4().hex[:12])) as c:
        yield c


def test_busy_consumer_still_gets_due_delayed_messages(client):
    """A consumer that keeps finding new messages still receives a delayed one when due."""
    consumer = client.queue("busy")
    producer = client.queue("busy")  # another queue object: it cannot warn the consumer
    consumer.push_many(range(50))
    assert consumer.pop() is not None  # runs the reclaim script: pops may skip it now
    producer.push("late", delay=0.05)
    deadline = time.monotonic() + 5.0
    payloads = []
    while "late" not in payloads and time.monotonic() < deadline:
        producer.push("filler")  # the consumer never runs dry
        message = consumer.pop()
        assert message is not None
        payloads.append(message.payload)
        message.ack()
    assert "late" in payloads
    consumer.purge(dead=True)


def test_pop_that_finds_nothing_new_promotes_at_once(client):
    """A pop with no new message runs the reclaim script even inside the skip window."""
    consumer = client.queue("idle")
    producer = client.queue("idle")
    consumer.push("first")
    consumer.pop().ack()  # the skip window is open now
    producer.push("later", delay=0.02)
    time.sleep(0.05)
    message = consumer.pop()
    assert message is not None and message.payload == "later"
    consumer.purge(dead=True)


def test_own_delayed_push_ends_the_skip_window(client, monkeypatch):
    """A delayed push through the same queue object is promoted when due, not later."""
    monkeypatch.setattr(redis_queue, "_SKIP_MAX_MS", 60_000)
    queue = client.queue("own")
    queue.push_many(range(20))
    assert queue.pop() is not None  # the skip window is open (up to the 1 s scan interval)
    queue.push("soon", delay=0.02)
    time.sleep(0.05)
    assert queue.pop() is not None
    # That pop ran the reclaim script: the message left the delayed set for the stream.
    assert client.redis("queues").zcard(queue.key + ":delayed") == 0
    queue.purge(dead=True)


def test_expired_leases_are_reclaimed_by_a_busy_consumer(client):
    """A lease that expires while another consumer keeps popping new messages comes back."""
    crashed = client.queue("lease", visibility_timeout=0.2)
    busy = client.queue("lease", visibility_timeout=0.2)
    crashed.push("lost")
    assert crashed.pop().payload == "lost"  # never acknowledged
    deadline = time.monotonic() + 5.0
    found = None
    while found is None and time.monotonic() < deadline:
        busy.push("filler")
        message = busy.pop()
        assert message is not None
        if message.payload == "lost":
            found = message
        message.ack()
    assert found is not None and found.deliveries == 2
    busy.purge(dead=True)


def test_fresh_entries_store_id_and_payload_only(client):
    """A fresh push is stored as id + payload; its enqueue time is the entry id's."""
    queue = client.queue("layout")
    before = time.time()
    message_id = queue.push({"a": 1})
    r = client.redis("queues")
    ((entry_id, fields),) = r.xrange(queue.key + ":stream")
    assert set(fields) == {b"id", b"payload"}
    assert fields[b"id"].decode() == message_id
    message = queue.pop()
    assert message.enqueued_at == int(entry_id.split(b"-")[0]) / 1000
    assert before - 1 <= message.enqueued_at <= time.time() + 1
    message.nack()  # re-added: the original enqueue time and the delivery travel along
    again = queue.pop()
    assert (again.id, again.enqueued_at, again.deliveries) == (message_id, message.enqueued_at, 2)
    assert queue.ack(again) == 1
    assert r.xlen(queue.key + ":stream") == 0 and r.hlen(queue.key + ":ids") == 0


def test_lost_script_cache_strands_no_message(client):
    """After SCRIPT FLUSH the pop that reloads the script still returns what it read."""
    queue = client.queue("flush")
    queue.push_many(range(10))
    client.redis("queues").script_flush()
    messages = queue.pop_many(10)
    assert sorted(m.payload for m in messages) == list(range(10))
    assert queue.ack(*messages) == 10
    stats = queue.stats()
    assert (stats.ready, stats.pending) == (0, 0)


def test_ack_of_a_foreign_id_with_a_comma(client):
    """A foreign entry's id containing the ack separator does not disturb the others."""
    queue = client.queue("comma")
    queue.push(1)
    client.redis("queues").xadd(queue.key + ":stream", {"id": "a,b", "payload": "2"})
    queue.push(3)
    messages = queue.pop_many(10)
    assert [m.payload for m in messages] == [1, 2, 3]
    assert queue.ack(*messages) == 3
    r = client.redis("queues")
    assert r.xlen(queue.key + ":stream") == 0 and r.hlen(queue.key + ":ids") == 0


def test_new_message_is_a_plain_message():
    """new_message builds the same Message as its constructor, handle included."""
    handle = (None, "1-0", 1)
    fast = new_message("id", ("x", 1), "q", 1, 2.5, handle)
    slow = Message("id", ("x", 1), "q", 1, 2.5, handle)
    assert type(fast) is Message
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    assert fast._handle == handle and fast.reason is None
    with pytest.raises(AttributeError):
        fast.id = "other"  # type: ignore[misc]
