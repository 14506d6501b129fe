"""Redis-specific queue behaviour: retried pushes, key layout, errors, consumer cleanup."""

from __future__ import annotations

import uuid

import pytest
import redis.exceptions

import kvkit
from kvkit._sync import queue as sync_queue
from kvkit._sync.backends import redis as sync_redis
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


def _lose_first_reply(monkeypatch, script):
    """Make the first EVALSHA of ``script`` run on the server, then lose its reply."""
    calls = {"n": 0}
    real = sync_redis._raw_command

    def flaky(pool, args):
        result = real(pool, args)
        if args[0] == "EVALSHA" and args[1] == script.sha:
            calls["n"] += 1
            if calls["n"] == 1:
                raise redis.exceptions.ConnectionError("connection lost before the reply")
        return result

    monkeypatch.setattr(sync_redis, "_raw_command", flaky)
    return calls


def test_push_retried_after_a_lost_reply_enqueues_once(monkeypatch, client):
    """A push whose reply was lost is retried by kvkit and still enqueues one message."""
    queue = client.queue("retry")
    calls = _lose_first_reply(monkeypatch, redis_queue.PUSH)
    message_id = queue.push("once")
    assert calls["n"] == 2
    assert queue.stats().ready == 1
    message = queue.pop()
    assert message.id == message_id and message.payload == "once"
    queue.ack(message)
    ids = queue.push_many(["a", "b", "c"])
    assert calls["n"] == 3  # only the first call lost its reply
    assert [m.id for m in queue.pop_many(10)] == ids
    queue.purge(dead=True)


def test_push_many_retried_after_a_lost_reply_enqueues_once(monkeypatch, client):
    """A push_many batch whose reply was lost is enqueued once."""
    queue = client.queue("retry")
    _lose_first_reply(monkeypatch, redis_queue.PUSH)
    ids = queue.push_many(range(5))
    assert queue.stats().ready == 5
    assert [m.id for m in queue.pop_many(10)] == ids
    queue.purge(dead=True)


def test_keys_share_one_hash_slot_and_acked_entries_are_deleted(client):
    """Every key of a queue carries the {name} hash tag; acked entries leave the stream."""
    queue = client.queue("layout", max_deliveries=1)
    r = client.redis("queues")
    queue.push_many([1, 2, 3])
    queue.push("later", delay=60)
    queue.push("d", dedupe_id="x")
    messages = queue.pop_many(4)
    queue.nack(messages[0])  # max_deliveries=1: dead letter
    prefix = client.settings.prefix
    keys = {k.decode() for k in r.scan_iter(match=f"{prefix}:*")}
    base = f"{prefix}:queue:{{layout}}"
    retry_records = {k for k in keys if k.startswith(f"{base}:dedupe:r:")}
    assert len(retry_records) == 2  # the two single pushes (push_many: one per batch)
    core = {
        f"{base}:stream",
        f"{base}:delayed",
        f"{base}:dead",
        f"{base}:ids",
        f"{base}:dedupe:u:x",
        f"{base}:rates",  # the throughput ring
    }
    # The XAUTOCLAIM cursor is only stored once it moved away from the start.
    assert core <= keys - retry_records <= core | {f"{base}:cursors"}
    assert r.xlen(f"{base}:stream") == 3
    assert queue.ack(*messages[1:]) == 3
    assert r.xlen(f"{base}:stream") == 0
    assert r.hlen(f"{base}:ids") == 0
    assert r.xlen(f"{base}:dead") == 1
    queue.purge(dead=True)


def test_out_of_order_acks_leave_nothing_behind(client):
    """Acks in any order delete exactly the acknowledged entries."""
    queue = client.queue("order")
    r = client.redis("queues")
    ids = queue.push_many(range(10))
    messages = queue.pop_many(10)
    assert queue.ack(messages[3], messages[7]) == 2
    assert r.xlen(queue.key + ":stream") == 8
    assert queue.ack(messages[0]) == 1
    assert r.xlen(queue.key + ":stream") == 7
    rest = [m for i, m in enumerate(messages) if i not in (0, 3, 7)]
    assert queue.ack(*reversed(rest)) == 7
    assert r.xlen(queue.key + ":stream") == 0
    assert r.hlen(queue.key + ":ids") == 0
    assert queue.ack(*ids) == 0
    queue.push("next")
    assert queue.pop().payload == "next"
    queue.purge(dead=True)


def test_maxlen_keeps_the_id_index_consistent(client):
    """Entries trimmed by maxlen also leave the id index."""
    queue = client.queue("bounded", maxlen=2)
    ids = queue.push_many(range(5))
    r = client.redis("queues")
    assert r.xlen(queue.key + ":stream") == 2
    assert sorted(k.decode() for k in r.hkeys(queue.key + ":ids")) == sorted(ids[3:])
    assert queue.ack(ids[0]) == 0
    queue.purge(dead=True)


def test_idle_consumers_are_removed(monkeypatch, client):
    """Consumers that hold nothing and were idle too long are removed from the group."""
    client.queue("gc").push_many([1, 2, 3, 4])
    for _ in range(3):
        finished = client.queue("gc")
        finished.ack(finished.pop())
    holder = client.queue("gc")
    assert holder.pop() is not None
    r, stream = client.redis("queues"), holder.key + ":stream"
    assert len(r.xinfo_consumers(stream, "kvkit")) == 4
    assert holder.stats().consumers == 1  # the one holding a message
    monkeypatch.setattr(sync_queue, "_CONSUMER_IDLE_MS", -1)
    assert holder.stats().consumers == 1
    assert len(r.xinfo_consumers(stream, "kvkit")) == 1  # only the holder remains
    holder.purge(dead=True)


def test_unreachable_server_raises_backend_unavailable():
    """Queue operations on an unreachable server raise kvkit errors, not redis-py ones."""
    settings = kvkit.Settings(url="redis://127.0.0.1:1/0", retries=0, connect_timeout=0.5)
    with kvkit.Client(settings=settings) as client:
        queue = client.queue("down")
        with pytest.raises(kvkit.BackendUnavailable) as info:
            queue.push(1)
        assert isinstance(info.value.__cause__, (redis.exceptions.ConnectionError, OSError))
        with pytest.raises(kvkit.BackendUnavailable):
            queue.pop(timeout=1)
        with pytest.raises(kvkit.BackendError):
            queue.stats()


def test_group_is_recreated_after_the_stream_is_deleted(client):
    """A consumer keeps working when its stream (and group) vanish underneath it."""
    queue = client.queue("vanish")
    queue.push(1)
    assert queue.pop() is not None
    client.redis("queues").delete(queue.key + ":stream")
    queue.push(2)
    assert queue.pop().payload == 2
    queue.purge(dead=True)
