"""Redis-side details behind the queue parity rules (issue 11, findings 28 and 30)."""

from __future__ import annotations

import time

from kvkit._sync.backends import redis_queue

# The `client` fixture (a sync client on fakeredis and on the session's Redis) is shared.
pytest_plugins = ["tests.test_queue_redis"]


def test_surplus_is_unread_and_no_lease_looks_ancient(client):
    """A reclaiming pop gives unread what it had no room for: no pending entry remains."""
    queue = client.queue("surplus", visibility_timeout=5.0)
    r = client.redis("queues")
    stream = queue.key + ":stream"
    queue.push_many(["a", "b", "c"])
    for message in queue.pop_many(2):
        queue.extend(message, 0.05)
    time.sleep(0.8)
    assert [m.payload for m in queue.pop_many(2)] == ["a", "b"]
    pending = r.xpending_range(stream, "kvkit", "-", "+", 10)
    assert [p["times_delivered"] for p in pending] == [2, 2]
    assert max(p["time_since_delivered"] for p in pending) < 5000
    (group,) = r.xinfo_groups(stream)
    assert group["last-delivered-id"] == pending[-1]["message_id"]
    queue.purge(dead=True)


def test_surplus_read_past_by_another_consumer_is_left_as_an_expired_first_delivery(client):
    """When another consumer read past the surplus, it stays pending as a fresh expiry."""
    queue = client.queue("raced", visibility_timeout=5.0)
    r = client.redis("queues")
    stream = queue.key + ":stream"
    queue.push_many(["a", "b", "c"])
    r.xgroup_create(stream, "kvkit", id="0")
    mine = r.xreadgroup("kvkit", "me", {stream: ">"}, count=2)[0][1]
    r.xreadgroup("kvkit", "other", {stream: ">"}, count=1)  # reads past the surplus
    surplus = mine[1][0].decode()
    script = redis_queue.UNREAD
    assert r.eval(script.source, 1, stream, "kvkit", "me", 5000, surplus) == 0
    (entry,) = r.xpending_range(stream, "kvkit", surplus, surplus, 1)
    assert entry["times_delivered"] == 0
    assert 5000 <= entry["time_since_delivered"] < 10_000
    assert queue.stats().oldest_pending_s < 10
    reclaimed = queue.pop_many(3)
    # "a" and "c" are leased for a while yet; "b" comes back, counted as a first delivery.
    assert [(m.payload, m.deliveries) for m in reclaimed] == [("b", 1)]
    queue.purge(dead=True)


def test_delayed_member_written_without_order_key_is_still_promoted(client):
    """A delayed member in the earlier layout (no order key) is delivered intact."""
    queue = client.queue("old-delayed")
    r = client.redis("queues")
    payload = queue.push_many(["x"], delay=60)  # a member in today's layout, for reference
    assert len(payload) == 1
    (member,) = r.zrange(queue.key + ":delayed", 0, -1)
    assert member.startswith(b"~")
    old = member.split(b"\n", 1)[1]  # id \n prior \n enqueued \n payload
    r.delete(queue.key + ":delayed")
    r.zadd(queue.key + ":delayed", {old: 0})
    message = queue.pop()
    assert message is not None and message.payload == "x" and message.id == payload[0]
    queue.purge(dead=True)
