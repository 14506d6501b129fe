"""get_or_set is single-flight across threads, tasks and processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time

import pytest

import kvkit
from tests.backends import BACKENDS, settings_for


@pytest.mark.parametrize("backend", BACKENDS)
def test_fifty_threads_run_the_factory_once(request, backend):
    """50 threads on a cold key: the factory runs once, everyone gets its value."""
    calls = []
    barrier = threading.Barrier(50)
    results = []

    def factory():
        calls.append(1)
        time.sleep(0.2)
        return {"value": 42}

    with kvkit.Client(settings=settings_for(request, backend)) as client:

        def worker():
            barrier.wait()
            results.append(client.cache.get_or_set("cold", factory))

        threads = [threading.Thread(target=worker) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        client.cache.clear()
    assert len(calls) == 1
    assert results == [{"value": 42}] * 50


@pytest.mark.parametrize("backend", BACKENDS)
async def test_fifty_tasks_run_the_factory_once(request, backend):
    """50 tasks on a cold key with an async factory: it runs once."""
    calls = []

    async def factory():
        calls.append(1)
        await asyncio.sleep(0.2)
        return [1, 2, 3]

    async with kvkit.AsyncClient(settings=settings_for(request, backend)) as client:
        results = await asyncio.gather(
            *(client.cache.get_or_set("cold", factory) for _ in range(50))
        )
        await client.cache.clear()
    assert len(calls) == 1
    assert results == [[1, 2, 3]] * 50


async def test_two_async_clients_share_the_lock(request):
    """Two clients on one shared store (like two processes) still compute once."""
    calls = []

    def factory():
        calls.append(1)
        time.sleep(0.1)  # sync factory on the async client is allowed
        return "v"

    url = "fakeredis://single-flight-shared"
    async with kvkit.AsyncClient(url) as a, kvkit.AsyncClient(url) as b:
        results = await asyncio.gather(
            *(c.cache.get_or_set("k", factory) for c in (a, b) for _ in range(10))
        )
        await a.cache.clear()
    assert results == ["v"] * 20
    assert len(calls) == 1


def _process_worker(url: str, prefix: str, start_at: float, out: multiprocessing.Queue) -> None:
    """Run 10 threads calling get_or_set; report the values seen."""
    client = kvkit.Client(settings=kvkit.Settings(url=url, prefix=prefix))
    raw = client.redis()

    def factory():
        raw.incr(f"{prefix}:factory-calls")
        time.sleep(0.3)
        return "computed"

    seen = []

    def worker():
        time.sleep(max(0.0, start_at - time.time()))
        seen.append(client.cache.get_or_set("cold", factory))

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    out.put(seen)


@pytest.mark.redis
def test_fifty_callers_in_five_processes_run_the_factory_once(redis_url, redis_server):
    """5 processes × 10 threads on one cold key: the factory runs once in total."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    prefix = f"sf{time.time_ns()}"
    start_at = time.time() + 2.0
    procs = [
        ctx.Process(target=_process_worker, args=(redis_url, prefix, start_at, out))
        for _ in range(5)
    ]
    for p in procs:
        p.start()
    seen = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    assert [v for chunk in seen for v in chunk] == ["computed"] * 50
    with redis_server.client() as raw:
        assert int(raw.get(f"{prefix}:factory-calls")) == 1


@pytest.mark.redis
def test_dead_holder_is_taken_over(redis_url, redis_server):
    """A process that dies holding the lock delays others by at most lock_timeout."""
    settings = kvkit.Settings(url=redis_url, prefix=f"dead{time.time_ns()}")
    with kvkit.Client(settings=settings) as client:
        lock_key = f"{settings.prefix}:lock:{settings.prefix}:cache:k"
        with redis_server.client() as raw:
            raw.set(lock_key, b"dead-process-token", px=800)
        start = time.monotonic()
        assert client.cache.get_or_set("k", lambda: "taken over", lock_timeout=5) == "taken over"
        assert 0.5 < time.monotonic() - start < 3
