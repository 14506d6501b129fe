"""One AsyncClient used from several event loops, at the same time and one after another."""

from __future__ import annotations

import asyncio
import threading

import pytest

import kvkit
from tests.backends import BACKENDS, settings_for

# Bounds every wait of these tests: a hang must fail the test, not stall the suite.
DEADLINE = 20.0


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test."""
    return str(request.param)


def _run_in_threads(client: kvkit.AsyncClient, threads: int, ops: int) -> dict[int, object]:
    """Run ``ops`` set+get pairs in each of ``threads`` threads, each with its own loop."""
    results: dict[int, object] = {}
    start = threading.Barrier(threads)

    def worker(n: int) -> None:
        async def work() -> str:
            for i in range(ops):
                await client.cache.set(f"{n}:{i}", i)
                if await client.cache.get(f"{n}:{i}") != i:
                    return f"wrong value for {n}:{i}"
                if i % 10 == 0:
                    await asyncio.sleep(0)  # let the other loop's thread interleave
            return "ok"

        start.wait(DEADLINE)
        try:
            results[n] = asyncio.run(asyncio.wait_for(work(), DEADLINE))
        except BaseException as exc:  # reported by the assertion below, with its type
            results[n] = exc

    workers = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(DEADLINE + 5)
    return results


def test_two_loops_at_once_share_one_client(request, backend):
    """Two threads each running asyncio.run on one AsyncClient both finish, no hang or raw error."""
    client = kvkit.AsyncClient(settings=settings_for(request, backend, socket_timeout=5.0))
    try:
        results = _run_in_threads(client, threads=2, ops=150)
        assert results == {0: "ok", 1: "ok"}
    finally:
        asyncio.run(_clear_and_close(client))


def test_four_loops_at_once_on_a_small_pool(request, backend):
    """Each loop gets its own pool: four concurrent loops on max_connections=1 all finish."""
    settings = settings_for(request, backend, max_connections=1, socket_timeout=5.0)
    client = kvkit.AsyncClient(settings=settings)
    try:
        results = _run_in_threads(client, threads=4, ops=50)
        assert results == {n: "ok" for n in range(4)}
    finally:
        asyncio.run(_clear_and_close(client))


def test_sequential_loops_do_not_pile_up_pools(request, backend):
    """Loops that ran and closed (pytest-asyncio style) leave at most one pool behind."""
    client = kvkit.AsyncClient(settings=settings_for(request, backend))

    async def once(i: int) -> None:
        await client.cache.set("k", i)
        assert await client.cache.get("k") == i

    try:
        for i in range(5):
            asyncio.run(once(i))
        clients = getattr(client.backend(), "_clients", None)
        if clients is not None:  # Redis family: one client per live loop
            assert len(clients) <= 1
    finally:
        asyncio.run(_clear_and_close(client))


def test_aclose_from_another_loop_releases_every_pool(request, backend):
    """aclose() on one loop releases the pools of loops that are already gone; reuse works."""
    client = kvkit.AsyncClient(settings=settings_for(request, backend))
    asyncio.run(client.cache.set("a", 1))
    asyncio.run(client.cache.set("b", 2))

    async def close_then_reuse() -> object:
        await client.aclose()
        clients = getattr(client.backend(), "_clients", None)
        assert clients is None or len(clients) == 0
        return await client.cache.get_many(["a", "b"])

    try:
        assert asyncio.run(close_then_reuse()) == {"a": 1, "b": 2}
    finally:
        asyncio.run(_clear_and_close(client))


def test_aclose_on_one_loop_leaves_a_running_loop_working(request, backend):
    """aclose() from one loop never pulls connections from under a loop busy in another thread."""
    client = kvkit.AsyncClient(settings=settings_for(request, backend, socket_timeout=5.0))
    busy = threading.Event()
    result: list[object] = []

    def other_thread() -> None:
        async def work() -> str:
            for i in range(300):
                await client.cache.set("b", i)
                if await client.cache.get("b") != i:
                    return "wrong value"
                if i == 20:
                    busy.set()
                await asyncio.sleep(0.001)
            return "ok"

        try:
            result.append(asyncio.run(asyncio.wait_for(work(), DEADLINE)))
        except BaseException as exc:  # reported by the assertion below, with its type
            result.append(exc)

    thread = threading.Thread(target=other_thread, daemon=True)
    thread.start()
    try:
        assert busy.wait(DEADLINE)
        for _ in range(3):
            asyncio.run(client.aclose())
        thread.join(DEADLINE + 5)
        assert result == ["ok"]
    finally:
        asyncio.run(_clear_and_close(client))


async def _clear_and_close(client: kvkit.AsyncClient) -> None:
    await client.cache.clear()
    await client.aclose()
