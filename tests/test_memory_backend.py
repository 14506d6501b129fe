"""memory:// specifics: named stores shared by sync and async clients, LRU bound, isolation."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import kvkit
from kvkit._memory import drop_store, get_store


def _name() -> str:
    return f"mem-{uuid.uuid4().hex[:8]}"


def test_private_stores_are_private():
    """Two plain memory:// clients do not see each other's keys."""
    with kvkit.Client("memory://") as a, kvkit.Client("memory://") as b:
        a.cache.set("k", 1)
        assert b.cache.get("k") is None


def test_named_store_is_shared_by_sync_and_async_clients():
    """memory://NAME is one store for every client in the process, sync or async."""
    url = f"memory://{_name()}"
    with kvkit.Client(url) as sync_client:
        sync_client.cache.set("k", {"from": "sync"})

        async def read_and_write():
            async with kvkit.AsyncClient(url) as async_client:
                value = await async_client.cache.get("k")
                await async_client.cache.set("k2", "from async")
                return value

        assert asyncio.run(read_and_write()) == {"from": "sync"}
        assert sync_client.cache.get("k2") == "from async"
    drop_store(url.removeprefix("memory://"))


def test_fakeredis_named_server_is_shared():
    """fakeredis://NAME is one fake server for every client using NAME."""
    url = f"fakeredis://{_name()}"
    with kvkit.Client(url) as a, kvkit.Client(url) as b:
        a.cache.set("k", 1)
        assert b.cache.get("k") == 1
    with kvkit.Client("fakeredis://") as c:
        assert c.cache.get("k") is None


def test_maxsize_evicts_least_recently_used_cache_entries_only():
    """maxsize bounds the cache LRU-style; sessions and queues are never evicted."""
    name = _name()
    with kvkit.Client(f"memory://{name}?maxsize=3") as client:
        cache = client.cache
        for key in ("a", "b", "c"):
            cache.set(key, key)
        assert cache.get("a") == "a"  # a is now the most recently used
        cache.set("d", "d")  # evicts b, the least recently used
        assert cache.get("b") is None
        assert cache.get_many(["a", "c", "d"]) == {"a": "a", "c": "c", "d": "d"}
        sids = [client.sessions.create({"n": i}) for i in range(10)]
        queue = client.queue("jobs")
        queue.push_many([{"n": i} for i in range(10)])
        for key in "efgh":
            cache.set(key, key)
        assert all(client.sessions.get(sid) is not None for sid in sids)
        assert queue.stats().ready == 10
        assert len(get_store(name).cache) == 3
    drop_store(name)


def test_named_store_cannot_be_reopened_with_another_maxsize():
    """A second client may not silently change a named store's bound."""
    name = _name()
    with kvkit.Client(f"memory://{name}?maxsize=3"):
        with pytest.raises(kvkit.ConfigError, match="maxsize"):
            kvkit.Client(f"memory://{name}?maxsize=5")
    drop_store(name)


def test_expired_entries_are_swept():
    """Expired entries do not pile up even if nobody reads them again."""
    name = _name()
    with kvkit.Client(f"memory://{name}") as client:
        client.cache.set_many({f"k{i}": i for i in range(50)}, ttl=0.01)
        import time

        time.sleep(0.05)
        assert len(get_store(name).cache) == 0
    drop_store(name)


def test_memory_health_reports_the_engine():
    """health() on memory:// passes and names the in-process engine."""
    with kvkit.Client("memory://") as client:
        health = client.health()
        assert health.ok
        assert health.checks[0].backend == "memory"
        assert "kvkit-memory" in (health.checks[0].server_version or "")
