"""redis+sentinel:// against a real master + replica + Sentinel, including a failover."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

import kvkit
from tests.servers import HOST

pytestmark = pytest.mark.sentinel


def _settings(url: str, **overrides: object) -> kvkit.Settings:
    prefix = "s" + uuid.uuid4().hex[:10]
    return kvkit.Settings(url=url, prefix=prefix, **overrides)  # type: ignore[arg-type]


def test_cache_and_sessions_through_sentinel(sentinel_setup):
    """The sync client finds the master through Sentinel and serves cache and sessions."""
    with kvkit.Client(settings=_settings(sentinel_setup.url)) as client:
        assert client.backend().kind == "sentinel"
        client.cache.set("k", {"v": 1}, ttl=30)
        assert client.cache.get("k") == {"v": 1}
        assert client.cache.incr("n", 5) == 5
        assert client.cache.get_many(["k", "n", "zz"]) == {"k": {"v": 1}, "n": 5}
        sid = client.sessions.create({"user": "ann"}, user_id="ann")
        assert client.sessions.get(sid) == {"user": "ann"}
        assert client.sessions.user_sessions("ann") == [sid]
        health = client.health()
        assert health.status == "pass"
        assert all(c.backend == "sentinel" for c in health.checks)
        master = client.redis().connection_pool.get_master_address()
        assert tuple(master) == (HOST, sentinel_setup.master.port)
        assert client.cache.clear() == 2


async def test_async_cache_and_sessions_through_sentinel(sentinel_setup):
    """The async client does the same."""
    async with kvkit.AsyncClient(settings=_settings(sentinel_setup.url)) as client:
        await client.cache.set("k", [1, 2])
        assert await client.cache.get("k") == [1, 2]
        sid = await client.sessions.create({"a": 1})
        assert await client.sessions.update(sid, {"b": 2}) == {"a": 1, "b": 2}
        assert await client.sessions.delete(sid) is True
        assert (await client.health()).status == "pass"
        await client.cache.clear()


def test_db_and_client_name_reach_the_master(sentinel_setup):
    """The /db path segment and client_name apply to the master connections."""
    url = sentinel_setup.url + "/3?client_name=kvkit-sentinel-test"
    with kvkit.Client(settings=_settings(url)) as client:
        client.cache.set("db3", 1)
        with sentinel_setup.master.client(db=3) as raw:
            assert raw.exists(client.cache.prefix + "db3") == 1
            names = {c["name"] for c in raw.client_list()}
        assert "kvkit-sentinel-test" in names
        client.cache.clear()


def test_unknown_service_is_backend_unavailable(sentinel_setup):
    """A service Sentinel does not know fails typed, after bounded retries."""
    url = f"redis+sentinel://{HOST}:{sentinel_setup.sentinel.port}/no-such-service"
    with kvkit.Client(settings=_settings(url, retries=1)) as client:
        with pytest.raises(kvkit.BackendUnavailable, match="no-such-service"):
            client.cache.get("k")


def test_credentials_are_never_shown(sentinel_setup):
    """The URL's password appears in no repr, health output or error."""
    host, port = HOST, sentinel_setup.sentinel.port
    url = f"redis+sentinel://:hunter2@{host}:{port}/no-such-service"
    with kvkit.Client(settings=_settings(url, retries=0)) as client:
        with pytest.raises(kvkit.BackendUnavailable) as info:
            client.cache.get("k")
        shown = [str(info.value), repr(client), repr(client.backend()), str(client.health())]
        assert all("hunter2" not in text for text in shown)
        assert "redis+sentinel://:***@" in repr(client)


@pytest.mark.faults
def test_failover_during_a_workload(sentinel_setup):
    """Sync and async clients follow SENTINEL FAILOVER to the new master by themselves."""
    sync_client = kvkit.Client(settings=_settings(sentinel_setup.url, socket_timeout=1.0))
    async_client = kvkit.AsyncClient(settings=sync_client.settings)
    acked: dict[str, tuple[int, float]] = {}
    errors: list[BaseException] = []
    stop = threading.Event()

    def sync_worker() -> None:
        i = 0
        while not stop.is_set():
            key = f"sync:{i}"
            try:
                sync_client.cache.set(key, i)
                acked[key] = (i, time.monotonic())
            except kvkit.BackendError as exc:  # allowed during the switch only
                errors.append(exc)
                time.sleep(0.02)
            i += 1

    async def async_worker() -> None:
        i = 0
        while not stop.is_set():
            key = f"async:{i}"
            try:
                await async_client.cache.set(key, i)
                acked[key] = (i, time.monotonic())
            except kvkit.BackendError as exc:
                errors.append(exc)
                await asyncio.sleep(0.02)
            i += 1
            await asyncio.sleep(0)

    def run_async_worker() -> None:
        async def main() -> None:
            await async_worker()
            await async_client.aclose()

        asyncio.run(main())

    threads = [threading.Thread(target=sync_worker), threading.Thread(target=run_async_worker)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        old_master = sentinel_setup.master
        new_address = sentinel_setup.failover()
        switched = time.monotonic()
        assert new_address == (HOST, sentinel_setup.master.port) != (HOST, old_master.port)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    try:
        # Both clients write to the new master now, without being re-created.
        sync_client.cache.set("after", "sync")
        with sentinel_setup.master.client() as raw:
            assert raw.get(sync_client.cache.prefix + "after") is not None

        async def after() -> None:
            async with kvkit.AsyncClient(settings=sync_client.settings) as c:
                await c.cache.set("after-async", 1)

        asyncio.run(after())
        assert all(isinstance(e, kvkit.BackendError) for e in errors)
        # The workload carried on against the new master, and every write acknowledged
        # after the switch is there. (Writes the old master acknowledged during the switch
        # itself may be lost: Redis replication is asynchronous; see the README.)
        after_switch = {k: v for k, (v, t) in acked.items() if t > switched}
        assert len(after_switch) > 10
        prefix = sync_client.cache.prefix
        with sentinel_setup.master.client() as raw:
            stored = raw.mget([prefix + k for k in after_switch])
        assert [int(v) if v is not None else None for v in stored] == list(after_switch.values())
    finally:
        sync_client.cache.clear()
        sync_client.close()
