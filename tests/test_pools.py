"""The pool contract (bounded, then waiting up to the socket timeout) on fakeredis:// exactly as on redis://.

A caller beyond ``max_connections`` waits for a free connection up to the socket timeout;
only a pool that stays exhausted that long raises :class:`kvkit.BackendTimeout`.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import kvkit
from tests.backends import settings_for

POOLED = [
    pytest.param("fakeredis", id="fakeredis"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


@pytest.mark.parametrize("backend", POOLED)
async def test_many_concurrent_operations_wait_for_a_connection(request, backend):
    """200 concurrent async operations on a pool of 2 all succeed (none fails at once)."""
    settings = settings_for(request, backend, max_connections=2, socket_timeout=5.0)
    async with kvkit.AsyncClient(settings=settings) as client:
        cache = client.cache
        await asyncio.gather(*(cache.set(f"k{i}", i) for i in range(200)))
        values = await asyncio.gather(*(cache.get(f"k{i}") for i in range(200)))
        assert values == list(range(200))
        pool = client.redis().connection_pool
        assert pool.max_connections == 2
        assert len(pool._available_connections) + len(pool._in_use_connections) <= 2
        await cache.clear()


@pytest.mark.parametrize("backend", POOLED)
async def test_exhausted_pool_times_out_after_the_socket_timeout(request, backend):
    """With every connection held elsewhere, an operation waits ~socket_timeout, then times out."""
    settings = settings_for(request, backend, max_connections=2, socket_timeout=0.3)
    async with kvkit.AsyncClient(settings=settings) as client:
        await client.cache.set("k", 1)
        pool = client.redis().connection_pool
        held = [await pool.get_connection() for _ in range(2)]
        try:
            start = time.monotonic()
            with pytest.raises(kvkit.BackendTimeout, match="no free connection"):
                await client.cache.get("k")
            assert 0.25 < time.monotonic() - start < 2.0
        finally:
            for conn in held:
                await pool.release(conn)
        assert await client.cache.get("k") == 1
        await client.cache.clear()


@pytest.mark.parametrize("backend", POOLED)
def test_sync_client_threads_wait_for_a_connection(request, backend):
    """The sync client's pool also waits: 16 threads on a pool of 2 all succeed."""
    from concurrent.futures import ThreadPoolExecutor

    settings = settings_for(request, backend, max_connections=2, socket_timeout=5.0)
    with kvkit.Client(settings=settings) as client:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: client.cache.set(f"k{i}", i), range(200)))
            values = list(pool.map(lambda i: client.cache.get(f"k{i}"), range(200)))
        assert values == list(range(200))
        client.cache.clear()
