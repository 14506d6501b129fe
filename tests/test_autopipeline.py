"""Auto-pipelining of the async Redis driver: shared round trips, cancellation, failures.

The proxy of ``tests.test_faults`` holds replies back (so that callers can be cancelled
while their replies are in flight) or swallows one and cuts the connection.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

import kvkit
from kvkit._pipeline import LINGER
from tests.test_faults import FaultyProxy

pytestmark = [pytest.mark.redis]


def _settings(url: str, **overrides: object) -> kvkit.Settings:
    return kvkit.Settings(url=url, prefix="p" + uuid.uuid4().hex[:10], **overrides)  # type: ignore[arg-type]


@pytest.fixture
def proxy(redis_server) -> Iterator[FaultyProxy]:
    """A FaultyProxy in front of the session redis_server."""
    p = FaultyProxy(redis_server.port)
    yield p
    p.close()


def _pool_size(client) -> int:
    pool = client.redis().connection_pool
    return len(pool._available_connections) + len(pool._in_use_connections)


async def test_concurrent_commands_share_one_connection(redis_url):
    """500 concurrent gets and sets go through one connection of the pool of 20."""
    async with kvkit.AsyncClient(settings=_settings(redis_url)) as client:
        cache = client.cache
        await asyncio.gather(*(cache.set(f"k{i}", i) for i in range(500)))
        assert await asyncio.gather(*(cache.get(f"k{i}") for i in range(500))) == list(range(500))
        assert _pool_size(client) == 1
        await cache.clear()


async def test_auto_pipeline_false_uses_a_connection_per_command(redis_url):
    """?auto_pipeline=false: the same load spreads over the pool, as before."""
    settings = _settings(f"{redis_url}?auto_pipeline=false")
    async with kvkit.AsyncClient(settings=settings) as client:
        cache = client.cache
        await asyncio.gather(*(cache.set(f"k{i}", i) for i in range(200)))
        assert await asyncio.gather(*(cache.get(f"k{i}") for i in range(200))) == list(range(200))
        assert _pool_size(client) > 1
        await cache.clear()


async def test_the_pipeline_gives_its_connection_back_when_idle(redis_url):
    """Between bursts the pool has every connection back (another user may take it)."""
    settings = _settings(redis_url, max_connections=1, socket_timeout=2.0)
    async with kvkit.AsyncClient(settings=settings) as client:
        cache = client.cache
        await asyncio.gather(*(cache.set(f"k{i}", i) for i in range(50)))
        await asyncio.sleep(LINGER * 4)
        pool = client.redis().connection_pool
        assert len(pool._in_use_connections) == 0
        # A command that needs a connection of its own gets the only one.
        assert await cache.delete("k1") is True
        assert await cache.get_many(["k2", "k3"]) == {"k2": 2, "k3": 3}
        await cache.clear()


async def test_the_pipeline_keeps_its_connection_across_short_gaps(redis_url, monkeypatch):
    """Calls a moment apart (one per request in a server) reuse the borrowed connection.

    Giving it back at every idle moment cost a pool check-out and two task switches
    per call; the pipeline now keeps it for LINGER seconds of idleness.
    """
    async with kvkit.AsyncClient(settings=_settings(redis_url)) as client:
        cache = client.cache
        await cache.set("k", 1)
        pool = client.redis().connection_pool
        checkouts = 0
        original = pool.get_connection

        async def counting(*args: object, **kwargs: object) -> object:
            nonlocal checkouts
            checkouts += 1
            return await original(*args, **kwargs)

        monkeypatch.setattr(pool, "get_connection", counting)
        for _ in range(20):
            assert await cache.get("k") == 1
            # Idle for a few loop iterations (the old code gave the connection back after
            # one), well under the linger.
            for _ in range(3):
                await asyncio.sleep(0)
        # Not 1: a loaded machine may stall this process past the linger now and then.
        assert checkouts <= 4
        await cache.clear()


async def test_a_pool_user_gets_the_lingering_connection(redis_url):
    """With a pool of one, a command needing its own connection waits at most the linger."""
    settings = _settings(redis_url, max_connections=1, socket_timeout=2.0)
    async with kvkit.AsyncClient(settings=settings) as client:
        cache = client.cache
        await cache.set("k", 1)
        assert await cache.get("k") == 1  # the pipeline now holds the only connection
        started = time.monotonic()
        assert await cache.get_many(["k", "missing"]) == {"k": 1}
        assert time.monotonic() - started < 0.5  # the pool wait (socket_timeout) is 2 s
        await cache.clear()


async def _cancel_storm(client, keys: list[str], tasks: int) -> None:
    """Start ``tasks`` mixed operations, cancel half at random points, check the rest."""
    cache = client.cache
    loop = asyncio.get_running_loop()
    ops = []
    for i in range(tasks):
        key = keys[i % len(keys)]
        if i % 4 == 0:
            ops.append(asyncio.create_task(cache.set(key, f"value-{i % len(keys)}")))
        elif i % 4 == 1:
            ops.append(asyncio.create_task(cache.get_many([key, keys[(i + 1) % len(keys)]])))
        else:
            ops.append(asyncio.create_task(cache.get(key)))
    await asyncio.sleep(0)
    for i, task in enumerate(ops):
        if i % 2 == 0:
            loop.call_later(random.uniform(0, 0.03), task.cancel)
    results = await asyncio.gather(*ops, return_exceptions=True)
    for i, (task, result) in enumerate(zip(ops, results, strict=True)):
        if task.cancelled():
            continue
        assert not isinstance(result, BaseException), result
        key_index = i % len(keys)
        if i % 4 == 1:
            expected = {keys[key_index]: f"value-{key_index}"}
            expected[keys[(i + 1) % len(keys)]] = f"value-{(i + 1) % len(keys)}"
            assert result == expected
        elif i % 4 != 0:
            assert result == f"value-{key_index}"
    assert sum(t.cancelled() for t in ops) > 0
    order = random.sample(range(len(keys)), len(keys))
    values = await asyncio.gather(*(cache.get(keys[i]) for i in order))
    assert values == [f"value-{i}" for i in order]


async def test_cancellation_at_high_concurrency_never_leaks_replies(proxy):
    """3000 in-flight operations, half cancelled at random: everyone else gets their own."""
    settings = _settings(proxy.url, socket_timeout=5)
    async with kvkit.AsyncClient(settings=settings) as client:
        keys = [f"key-{i}" for i in range(300)]
        await client.cache.set_many({k: f"value-{i}" for i, k in enumerate(keys)})
        proxy.delay = 0.005  # replies in flight long enough to be cancelled
        await _cancel_storm(client, keys, 3000)
        proxy.delay = 0
        await _cancel_storm(client, keys, 3000)
        await client.cache.clear()


@pytest.mark.cluster
async def test_cancellation_at_high_concurrency_on_cluster(redis_cluster):
    """The same on Cluster, where each node has its own pipeline."""
    async with kvkit.AsyncClient(settings=_settings(redis_cluster.url)) as client:
        keys = [f"key-{i}" for i in range(300)]
        await client.cache.set_many({k: f"value-{i}" for i, k in enumerate(keys)})
        for _ in range(2):
            await _cancel_storm(client, keys, 2000)
        await client.cache.clear()


async def test_a_lost_reply_fails_only_the_non_idempotent_write(proxy):
    """Reply lost mid-pipeline: the idempotent reads retry, incr raises and counted once."""
    settings = _settings(proxy.url, socket_timeout=1.0)
    async with kvkit.AsyncClient(settings=settings) as client:
        cache = client.cache
        await cache.set("warm", 1)
        await cache.incr("loads-the-script")  # so the lost reply is the increment's own
        proxy.lose_replies = 1
        with pytest.raises(kvkit.BackendUnavailable):
            await cache.incr("n")
        assert await cache.get("n") == 1
        # Reads caught in a lost connection are retried (idempotent) and succeed.
        proxy.lose_replies = 1
        values = await asyncio.gather(*(cache.get("warm") for _ in range(50)))
        assert values == [1] * 50
        await cache.clear()


async def test_a_silent_server_times_out_then_recovers(proxy):
    """No reply within socket_timeout: BackendTimeout; the next commands work again."""
    settings = _settings(proxy.url, socket_timeout=0.3, retries=0)
    async with kvkit.AsyncClient(settings=settings) as client:
        cache = client.cache
        await cache.set("k", 1)
        proxy.delay = 1.0
        with pytest.raises(kvkit.BackendTimeout):
            await asyncio.gather(*(cache.get("k") for _ in range(20)))
        proxy.delay = 0
        assert await asyncio.gather(*(cache.get("k") for _ in range(20))) == [1] * 20
        await cache.clear()


async def test_pipelined_errors_reach_their_own_caller(redis_url):
    """An error reply (WRONGTYPE) fails its caller only; its neighbours get their values."""
    async with kvkit.AsyncClient(settings=_settings(redis_url)) as client:
        cache = client.cache
        await cache.set("good", "v")
        await client.redis().lpush(cache.prefix + "list", "x")
        results = await asyncio.gather(
            *(cache.get("list" if i % 5 == 0 else "good") for i in range(50)),
            return_exceptions=True,
        )
        for i, result in enumerate(results):
            if i % 5 == 0:
                assert isinstance(result, kvkit.BackendError)
            else:
                assert result == "v"
        await cache.clear()


def test_sync_clients_accept_the_option(redis_url):
    """?auto_pipeline= is accepted on the sync client too (threads do not pipeline)."""
    with kvkit.Client(settings=_settings(f"{redis_url}?auto_pipeline=false")) as client:
        client.cache.set("k", 1)
        assert client.cache.get("k") == 1
        client.cache.clear()


# --------------------------------------------------------------------------- sync, opt-in


def _threads(n: int, work) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_sync_threads_share_round_trips_when_asked(redis_url):
    """?auto_pipeline=true: 32 threads share a connection; everyone gets their own value."""
    settings = _settings(f"{redis_url}?auto_pipeline=true")
    with kvkit.Client(settings=settings) as client:
        cache = client.cache
        cache.set_many({f"k{i}": i for i in range(32)})

        def work(i: int) -> None:
            for n in range(200):
                assert cache.get(f"k{(i + n) % 32}") == (i + n) % 32

        assert _threads(32, work) == []
        pipe = client.backend()._pipes.get(None)
        assert pipe.shared > 0  # commands did meet and share the connection
        cache.clear()
    assert client.backend()._pipes.get(None)._readers == set()  # readers gave back


def test_sync_pipeline_is_off_by_default(redis_url):
    """Sync clients do not pipeline unless asked (it costs below ~16 threads)."""
    with kvkit.Client(settings=_settings(redis_url)) as client:
        assert client.backend().auto_pipeline is False


def test_sync_pipeline_retries_idempotent_reads_after_a_lost_reply(proxy):
    """A reply lost on the shared connection fails everyone on it; reads are retried."""
    settings = _settings(f"{proxy.url}?auto_pipeline=true", socket_timeout=1.0)
    with kvkit.Client(settings=settings) as client:
        cache = client.cache
        cache.set_many({f"k{i}": i for i in range(16)})
        proxy.delay = 0.002  # keep commands in flight together

        def work(i: int) -> None:
            for _ in range(20):
                assert cache.get(f"k{i}") == i

        proxy.lose_replies = 2
        assert _threads(16, work) == []
        proxy.delay = 0
        cache.clear()


def test_sync_pipeline_times_out_then_recovers(proxy):
    """No reply within socket_timeout: BackendTimeout in every waiting thread, then fine."""
    settings = _settings(f"{proxy.url}?auto_pipeline=true", socket_timeout=0.3, retries=0)
    with kvkit.Client(settings=settings) as client:
        cache = client.cache
        cache.set("k", 1)
        proxy.delay = 1.0
        errors = _threads(8, lambda i: cache.get("k"))
        assert errors and all(isinstance(e, kvkit.BackendTimeout) for e in errors)
        proxy.delay = 0
        time.sleep(1.2)  # the held-back replies arrive and the broken connections go
        assert _threads(8, lambda i: cache.get("k")) == []
        assert cache.get("k") == 1
        cache.clear()
