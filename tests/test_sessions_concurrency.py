"""Sessions under concurrency: threads on the sync client, tasks on the async client."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import kvkit
from tests.backends import BACKENDS, settings_for

WORKERS = 20


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest) -> kvkit.Settings:
    """Settings of an isolated client on each backend."""
    return settings_for(request, str(request.param))


def run_threads(count: int, target) -> list:
    """Run ``target(i)`` in ``count`` threads released together; return the results."""
    barrier = threading.Barrier(count)

    def go(i: int):
        barrier.wait()
        return target(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(go, range(count)))


def test_concurrent_updates_threads(settings):
    """20 threads updating different items of one session: every item survives."""
    with kvkit.Client(settings=settings) as client:
        sessions = client.sessions
        sid = sessions.create({"base": 0})

        def work(i: int) -> None:
            for round_ in range(5):
                assert sessions.update(sid, {f"k{i}": round_}) is not None

        run_threads(WORKERS, work)
        expected = {"base": 0} | {f"k{i}": 4 for i in range(WORKERS)}
        assert sessions.get(sid) == expected


async def test_concurrent_updates_tasks(settings):
    """20 tasks updating different items of one session: every item survives."""
    async with kvkit.AsyncClient(settings=settings) as client:
        sessions = client.sessions
        sid = await sessions.create({"base": 0})

        async def work(i: int) -> None:
            for round_ in range(5):
                assert await sessions.update(sid, {f"k{i}": round_}) is not None

        await asyncio.gather(*(work(i) for i in range(WORKERS)))
        expected = {"base": 0} | {f"k{i}": 4 for i in range(WORKERS)}
        assert await sessions.get(sid) == expected


def test_concurrent_update_and_remove_threads(settings):
    """Concurrent add/remove of disjoint items: the result is exactly the expected set."""
    with kvkit.Client(settings=settings) as client:
        sessions = client.sessions
        sid = sessions.create({f"old{i}": i for i in range(WORKERS)})

        def work(i: int) -> None:
            sessions.update(sid, {f"new{i}": i}, remove=[f"old{i}"])

        run_threads(WORKERS, work)
        assert sessions.get(sid) == {f"new{i}": i for i in range(WORKERS)}


def test_rotate_under_concurrent_reads_threads(settings):
    """Readers of the old id see the data until the rotation, then only None."""
    with kvkit.Client(settings=settings) as client:
        sessions = client.sessions
        data = {"cart": list(range(10))}
        sid = sessions.create(data, user_id="rotator")
        stop = threading.Event()
        seen: list[list[bool]] = [[] for _ in range(8)]

        def reader(i: int) -> None:
            while not stop.is_set():
                got = sessions.get(sid)
                assert got is None or got == data
                seen[i].append(got is not None)

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(reader, i) for i in range(8)]
            while not all(seen):  # every reader is running
                stop.wait(0.001)
            new = sessions.rotate(sid)
            after = sessions.get(sid)
            stop.set()
            for future in futures:
                future.result()  # re-raises a reader's failed assertion
        assert new is not None
        assert after is None
        assert sessions.get(new) == data
        assert sessions.user_sessions("rotator") == [new]
        for history in seen:
            # Once a reader saw the old id dead, it never saw it alive again.
            if False in history:
                assert True not in history[history.index(False) :]


async def test_rotate_under_concurrent_reads_tasks(settings):
    """Tasks reading the old id while it rotates never see it come back."""
    async with kvkit.AsyncClient(settings=settings) as client:
        sessions = client.sessions
        data = {"cart": [1, 2]}
        sid = await sessions.create(data)
        rotated = asyncio.Event()
        histories: list[list[bool]] = []

        async def reader() -> None:
            history: list[bool] = []
            histories.append(history)
            while True:
                done = rotated.is_set()
                got = await sessions.get(sid)
                assert got is None or got == data
                history.append(got is not None)
                if done:
                    return
                await asyncio.sleep(0)

        async def rotator() -> str | None:
            await asyncio.sleep(0.01)
            new = await sessions.rotate(sid)
            rotated.set()
            return new

        *_, new = await asyncio.gather(*(reader() for _ in range(WORKERS)), rotator())
        assert new is not None
        assert await sessions.get(new) == data
        for history in histories:
            assert history[-1] is False
            if False in history:
                assert True not in history[history.index(False) :]


def test_concurrent_rotations_of_one_session_threads(settings):
    """Only one of 20 concurrent rotations of one id wins; the winner's id works."""
    with kvkit.Client(settings=settings) as client:
        sessions = client.sessions
        sid = sessions.create({"a": 1})
        results = run_threads(WORKERS, lambda _: sessions.rotate(sid))
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        assert sessions.get(winners[0]) == {"a": 1}


def test_creates_racing_delete_user_threads(settings):
    """While sessions are created for a user and delete_user runs, the index stays exact."""
    with kvkit.Client(settings=settings) as client:
        sessions = client.sessions

        def work(i: int) -> list[str]:
            if i % 5 == 0:
                sessions.delete_user("racer")
                return []
            return [sessions.create({"i": i}, user_id="racer") for _ in range(3)]

        created = [sid for ids in run_threads(WORKERS, work) for sid in ids]
        listed = set(sessions.user_sessions("racer"))
        for sid in created:
            assert sessions.exists(sid) == (sid in listed)
        assert sessions.delete_user("racer") == len(listed)
        assert not any(sessions.exists(sid) for sid in created)


async def test_concurrent_creates_for_one_user_tasks(settings):
    """20 tasks creating sessions for one user: all are indexed, all are logged out."""
    async with kvkit.AsyncClient(settings=settings) as client:
        sessions = client.sessions
        ids = await asyncio.gather(*(sessions.create(user_id="many") for _ in range(WORKERS)))
        assert sorted(await sessions.user_sessions("many")) == sorted(ids)
        assert await sessions.delete_user("many") == WORKERS


async def test_named_memory_store_shared_by_sync_and_async_clients():
    """memory://NAME sessions created by a sync client are visible to an async client."""
    url = "memory://sessions-shared-test"
    with kvkit.Client(url) as sync_client:
        sid = sync_client.sessions.create({"from": "sync"}, user_id="shared")
        async with kvkit.AsyncClient(url) as async_client:
            assert await async_client.sessions.get(sid) == {"from": "sync"}
            assert await async_client.sessions.update(sid, {"to": "async"}) == {
                "from": "sync",
                "to": "async",
            }
            assert await async_client.sessions.user_sessions("shared") == [sid]
        assert sync_client.sessions.delete_user("shared") == 1
