"""Operation metrics: the counts a client records are the operations it performed."""

from __future__ import annotations

import pytest

import kvkit
from kvkit._metrics import BOUNDS
from tests.backends import settings_for


def _ops(client):
    """``{(service, op): (ok, error)}`` of the client's snapshot."""
    return {
        (row["service"], row["op"]): (row["ok"], row["error"])
        for row in client.metrics_snapshot()["operations"]
    }


def _backend_label(backend):
    return {"cluster": "redis+cluster", "sentinel": "redis+sentinel"}.get(backend, backend)


async def test_cache_operations_and_hits_are_counted(client, backend):
    """Each cache call is one count under its method name; gets count hits and misses."""
    cache = client.cache
    await cache.set("a", 1)
    await cache.set("b", 2)
    assert await cache.get("a") == 1
    assert await cache.get("missing") is None
    assert await cache.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    await cache.namespace("ns").get("x")  # a namespace records into the same figures
    assert await cache.get_or_set("c", lambda: 3) == 3
    assert await cache.delete("a")
    ops = _ops(client)
    assert ops[("cache", "set")] == (2, 0)
    assert ops[("cache", "get")] == (3, 0)
    assert ops[("cache", "get_many")] == (1, 0)
    assert ops[("cache", "get_or_set")] == (1, 0)
    assert ops[("cache", "delete")] == (1, 0)
    snapshot = client.metrics_snapshot()
    # hits: a, a, b; misses: missing, c, ns:x, and c twice in get_or_set (it looks again
    # once it holds the lock), as in cache.stats
    assert snapshot["cache"] == {"hits": 3, "misses": 5, "hit_ratio": 3 / 8}
    assert cache.stats.hits == 3  # the same counting as the view's own stats
    row = next(r for r in snapshot["operations"] if r["op"] == "get")
    assert row["backend"] == _backend_label(backend)
    assert len(row["buckets"]) == len(BOUNDS) + 1 and sum(row["buckets"]) == row["count"] == 3
    assert row["sum"] > 0 and 0 < row["p50"] <= row["p99"] <= BOUNDS[-1]


async def test_failures_count_as_errors(client):
    """A call that raises is counted once, with outcome error."""
    with pytest.raises(kvkit.InvalidArgument):
        await client.cache.get("")
    with pytest.raises(kvkit.SerializationError):
        await client.cache.set("k", object())
    assert _ops(client)[("cache", "get")] == (0, 1)
    assert _ops(client)[("cache", "set")] == (0, 1)


async def test_session_operations_are_counted(client):
    """Each session call is one count under its method name."""
    sessions = client.sessions
    sid = await sessions.create({"n": 1}, user_id="ada")
    await sessions.get(sid)
    await sessions.update(sid, {"n": 2})
    assert await sessions.get("not-an-issued-id") is None
    await sessions.delete_user("ada")
    ops = _ops(client)
    assert ops[("sessions", "create")] == (1, 0)
    assert ops[("sessions", "get")] == (2, 0)
    assert ops[("sessions", "update")] == (1, 0)
    assert ops[("sessions", "delete_user")] == (1, 0)


async def test_queue_operations_are_counted_once(client, make_queue):
    """pop is one pop (not also a pop_many); consume records the pops and acks it makes."""
    queue = make_queue("metered")
    await queue.push(1)
    await queue.push_many([2, 3])
    message = await queue.pop()
    await message.ack()
    assert await queue.consume(lambda m: None, max_messages=2) == 2
    await queue.stats()
    ops = _ops(client)
    assert ops[("queue", "push")] == (1, 0)
    assert ops[("queue", "push_many")] == (1, 0)
    assert ops[("queue", "pop")] == (1, 0)
    assert ops[("queue", "pop_many")][0] >= 1  # consume's batches
    assert ops[("queue", "ack")][0] == 3  # message.ack() and consume's two
    assert ops[("queue", "stats")] == (1, 0)


async def test_limiter_and_lock_operations_are_counted(client):
    """Rate-limit hits/peeks/resets and lock acquire/extend/locked/release are recorded."""
    limiter = client.rate_limiter("metered", "2/minute")
    assert (await limiter.hit("k")).allowed
    await limiter.peek("k")
    await limiter.reset("k")
    lock = client.lock("metered", ttl=5, auto_renew=False)
    async with lock:
        assert await lock.extend()
        assert await lock.locked()
    ops = _ops(client)
    assert ops[("limiter", "hit")] == (1, 0)
    assert ops[("limiter", "peek")] == (1, 0)
    assert ops[("limiter", "reset")] == (1, 0)
    assert ops[("lock", "acquire")] == (1, 0)
    assert ops[("lock", "extend")] == (1, 0)
    assert ops[("lock", "locked")] == (1, 0)
    assert ops[("lock", "release")] == (1, 0)


async def test_limiter_fail_open_is_an_error():
    """A hit that failed open returns an allowed decision but is counted as an error."""
    settings = kvkit.Settings(url="redis://127.0.0.1:1/0", retries=0, connect_timeout=0.2)
    async with kvkit.AsyncClient(settings=settings) as client:
        limiter = client.rate_limiter("open", "1/minute", fail_open=True)
        assert (await limiter.hit("k")).allowed
        assert _ops(client) == {("limiter", "hit"): (0, 1)}


async def test_metrics_can_be_turned_off(request, backend):
    """Settings.metrics=False records nothing (and says so)."""
    settings = settings_for(request, backend, metrics=False)
    async with kvkit.AsyncClient(settings=settings) as client:
        await client.cache.set("k", 1)
        await client.cache.get("k")
        await client.queue("off").push(1)
        snapshot = client.metrics_snapshot()
        await client.queue("off").purge()
    assert snapshot["enabled"] is False
    assert snapshot["operations"] == []


async def test_fail_open_errors_are_errors(request):
    """A cache call that failed open returns normally but is counted as an error."""
    settings = kvkit.Settings(
        url="redis://127.0.0.1:1/0", cache_fail_open=True, retries=0, connect_timeout=0.2
    )
    async with kvkit.AsyncClient(settings=settings) as client:
        assert await client.cache.get("k", "fallback") == "fallback"
        await client.cache.set("k", 1)
        assert _ops(client) == {("cache", "get"): (0, 1), ("cache", "set"): (0, 1)}
        assert client.cache.stats.errors == 2
