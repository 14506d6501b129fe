"""Load on a bounded pool: many threads and tasks, a bound, no leak.

The bound is checked from the server's side: every client here sets a unique
``client_name`` and a sampler thread counts that name in ``CLIENT LIST`` while the load
runs.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

import kvkit
from kvkit._pipeline import LINGER

pytestmark = [pytest.mark.redis, pytest.mark.slow]

POOL = 20


def _named(url: str, **overrides: object) -> tuple[kvkit.Settings, str]:
    name = "kvkit-load-" + uuid.uuid4().hex[:8]
    settings = kvkit.Settings(
        url=f"{url}?client_name={name}",
        prefix="l" + uuid.uuid4().hex[:10],
        max_connections=POOL,
        **overrides,  # type: ignore[arg-type]
    )
    return settings, name


def _count(servers, name: str) -> int:
    """Connections named ``name`` on the busiest of ``servers``."""
    counts = []
    for server in servers:
        with server.client() as raw:
            counts.append(sum(1 for c in raw.client_list() if c.get("name") == name))
    return max(counts)


@contextmanager
def _sampling(servers, name: str) -> Iterator[Callable[[], int]]:
    """Sample CLIENT LIST every few ms while the block runs; yields a peak() getter."""
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _count(servers, name))
            time.sleep(0.005)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        yield lambda: peak[0]
    finally:
        stop.set()
        thread.join()


def test_100_threads_on_a_pool_of_20(redis_server):
    """100 threads x 100 operations all succeed; the server never sees > 20 connections."""
    # The pool wait is the socket timeout. redis-py's pool is not fair (a thread arriving
    # can take a freed connection before one that waits), so on a CI machine running four
    # test workers on two cores one of 100 threads could wait out the default 5 s.
    settings, name = _named(redis_server.url, socket_timeout=30.0)
    errors: list[BaseException] = []
    with kvkit.Client(settings=settings) as client, _sampling([redis_server], name) as peak:
        cache = client.cache

        def work(n: int) -> None:
            try:
                for i in range(50):
                    cache.set(f"t{n}:{i}", i)
                    assert cache.get(f"t{n}:{i}") == i
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert 0 < peak() <= POOL
        assert len(client.redis().connection_pool._connections) <= POOL
        assert cache.clear() == 5000
    assert _count([redis_server], name) == 0  # close() released every connection


async def test_500_tasks_on_a_pool_of_20(redis_server):
    """500 tasks all succeed on 20 connections; the server never sees more."""
    settings, name = _named(redis_server.url)
    async with kvkit.AsyncClient(settings=settings) as client:
        cache = client.cache
        with _sampling([redis_server], name) as peak:

            async def work(n: int) -> int:
                await cache.set(f"a{n}", n)
                await asyncio.sleep(0)
                return await cache.get(f"a{n}")

            for _ in range(4):
                assert await asyncio.gather(*(work(n) for n in range(500))) == list(range(500))
        assert 0 < peak() <= POOL
        assert await cache.clear() == 500
    assert await asyncio.to_thread(_count, [redis_server], name) == 0


async def test_no_connection_leak_after_10000_operations(redis_server):
    """10 000 mixed operations (errors, cancellations): <= 20 idle connections, 0 after close."""
    settings, name = _named(redis_server.url, socket_timeout=2.0)
    async with kvkit.AsyncClient(settings=settings) as client:
        cache = client.cache
        done = 0

        async def op(i: int) -> None:
            nonlocal done
            kind = i % 5
            if kind == 0:
                await cache.set(f"k{i % 300}", i)
            elif kind == 1:
                await cache.get(f"k{i % 300}")
            elif kind == 2:
                await cache.get_many([f"k{j}" for j in range(i % 300, i % 300 + 5)])
            elif kind == 3:
                await cache.incr(f"n{i % 7}")
            else:
                with pytest.raises(kvkit.InvalidArgument):
                    await cache.incr(f"k{i % 300}", 1.5)  # bad input: nothing sent
                await cache.exists(f"k{i % 300}")
            done += 1

        for start in range(0, 10_000, 500):
            batch = [asyncio.create_task(op(i)) for i in range(start, start + 500)]
            if start % 2000 == 0:  # cancel a few in flight now and then
                await asyncio.sleep(0)
                for task in batch[::50]:
                    task.cancel()
            await asyncio.gather(*batch, return_exceptions=True)
        assert done >= 9_900
        await asyncio.sleep(LINGER * 4)  # the auto-pipeline keeps its connection that long
        pool = client.redis().connection_pool
        assert len(pool._in_use_connections) == 0
        assert len(pool._available_connections) <= POOL
        assert await asyncio.to_thread(_count, [redis_server], name) <= POOL
        await cache.clear()
    assert await asyncio.to_thread(_count, [redis_server], name) == 0


def test_sync_no_leak_after_10000_operations(redis_server):
    """The sync client: 10 000 operations from 8 threads, <= 20 connections, 0 after close."""
    settings, name = _named(redis_server.url)
    with kvkit.Client(settings=settings) as client:
        cache = client.cache

        def work(n: int) -> None:
            for i in range(1250):
                if i % 3 == 0:
                    cache.set(f"k{n}:{i % 50}", i)
                elif i % 3 == 1:
                    cache.get(f"k{n}:{i % 50}")
                else:
                    cache.incr(f"n{n}")

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert cache.get("n0") == 416
        assert _count([redis_server], name) <= POOL
        cache.clear()
    assert _count([redis_server], name) == 0


@pytest.mark.cluster
async def test_500_tasks_on_cluster(redis_cluster):
    """500 tasks on Cluster with max_connections=20: no node sees more than 20."""
    settings, name = _named(redis_cluster.url)
    async with kvkit.AsyncClient(settings=settings) as client:
        cache = client.cache
        with _sampling(redis_cluster.nodes, name) as peak:

            async def work(n: int) -> int:
                await cache.set(f"a{n}", n)
                return await cache.get(f"a{n}")

            for _ in range(3):
                assert await asyncio.gather(*(work(n) for n in range(500))) == list(range(500))
        assert 0 < peak() <= POOL
        assert await cache.clear() == 500
