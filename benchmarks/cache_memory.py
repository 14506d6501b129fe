"""``memory`` rows: kvkit memory:// vs cachetools, cashews mem://, aiocache.

kvkit's memory backend stores the encoded bytes (the same codec as on Redis, so values
behave identically on every backend); cachetools is given the same work (``json`` in and
out). cashews' and aiocache's memory caches keep a reference to the Python object by
default (no serialization at all); they are benchmarked with those defaults, as users
get them, which favours them.
"""

from __future__ import annotations

import functools
import gc
import itertools
import json
from typing import Any

import kvkit

from .common import KEY, PREFIX, TTL, VALUE
from .harness import Case, Env, Skip, register


def _settings() -> kvkit.Settings:
    return kvkit.Settings(url="memory://", prefix=PREFIX)


def _cachetools(env: Env, op: str) -> Case:
    from cachetools import TTLCache

    client = kvkit.Client(settings=_settings())
    cache = client.cache
    # Plain TTLCache without a lock (not thread-safe, unlike kvkit's store): the cheapest
    # thing a cachetools user can write.
    peer: TTLCache[str, bytes] = TTLCache(maxsize=10_000, ttl=TTL)
    dumps, loads = json.dumps, json.loads
    full = f"{PREFIX}:cache:{KEY}"
    cache.set(KEY, VALUE, ttl=TTL)
    peer[full] = dumps(VALUE).encode()

    if op == "get":

        def kvkit_get() -> Any:
            return cache.get(KEY)

        def peer_get() -> Any:
            data = peer.get(full)
            return None if data is None else loads(data)

        if kvkit_get() != VALUE or peer_get() != VALUE:
            raise RuntimeError("the get rows do not read the value back")
        return Case(kvkit_get, peer_get, client.close)

    def kvkit_set() -> None:
        cache.set(KEY, VALUE, ttl=TTL)

    def peer_set() -> None:
        peer[full] = dumps(VALUE).encode()

    return Case(kvkit_set, peer_set, client.close)


for _op in ("get", "set"):
    register(
        "memory",
        f"cache.{_op}",
        mode="sync",
        backend="memory://",
        baseline="cachetools TTLCache + json",
        target=0.7,
        ops=50_000,
    )(functools.partial(_cachetools, op=_op))


async def _cashews(env: Env, op: str) -> Case:
    try:
        from cashews import Cache
    except ImportError:
        raise Skip("cashews is not installed (pip install cashews)") from None
    client = kvkit.AsyncClient(settings=_settings())
    cache = client.cache
    peer = Cache()
    peer.setup("mem://", size=10_000)
    await peer.init()
    return await _peer_case(
        client,
        cache,
        get=lambda: peer.get(KEY),
        set_=lambda: peer.set(KEY, VALUE, expire=TTL),
        close=peer.close,
        op=op,
    )


async def _aiocache(env: Env, op: str) -> Case:
    try:
        from aiocache import SimpleMemoryCache
    except ImportError:
        raise Skip("aiocache is not installed (pip install aiocache)") from None
    client = kvkit.AsyncClient(settings=_settings())
    cache = client.cache
    peer = SimpleMemoryCache()
    return await _peer_case(
        client,
        cache,
        get=lambda: peer.get(KEY),
        set_=lambda: peer.set(KEY, VALUE, ttl=TTL),
        close=peer.close,
        op=op,
    )


async def _peer_case(
    client: kvkit.AsyncClient, cache: Any, *, get: Any, set_: Any, close: Any, op: str
) -> Case:
    await cache.set(KEY, VALUE, ttl=TTL)
    await set_()

    async def teardown() -> None:
        await client.aclose()
        await close()

    if op == "get":

        async def kvkit_get() -> Any:
            return await cache.get(KEY)

        async def peer_get() -> Any:
            return await get()

        if await kvkit_get() != VALUE or await peer_get() != VALUE:
            raise RuntimeError("the get rows do not read the value back")
        return Case(kvkit_get, peer_get, teardown)

    async def kvkit_set() -> None:
        await cache.set(KEY, VALUE, ttl=TTL)

    async def peer_set() -> None:
        await set_()

    return Case(kvkit_set, peer_set, teardown)


for _op in ("get", "set"):
    register(
        "memory",
        f"cache.{_op}",
        mode="async",
        backend="memory://",
        baseline="cashews mem:// (no serialization)",
        target=1.0,
        ahead=True,
        ops=30_000,
        tags=("peers",),
    )(functools.partial(_cashews, op=_op))
    register(
        "memory",
        f"cache.{_op}",
        mode="async",
        backend="memory://",
        baseline="aiocache SimpleMemoryCache (no serialization)",
        target=1.0,
        ahead=True,
        ops=30_000,
        tags=("peers",),
    )(functools.partial(_aiocache, op=_op))


# --------------------------------------------------------------------------- bytes per item

ITEMS = 10_000
"""Items stored per memory measurement."""


def _bytes_per_item(store: Any) -> float:
    """Bytes ``store(key, value)`` keeps per item for ITEMS items (tracemalloc)."""
    import tracemalloc

    items = [(f"user:{i}", {**VALUE, "id": i}) for i in range(ITEMS)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for key, value in items:
            store(key, value)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / ITEMS


def _memory_size(env: Env) -> Case:
    from cachetools import TTLCache

    def kvkit_bytes() -> float:
        # A fresh named store each time (memory://NAME is process-wide): only its items.
        name = f"kvbench-size-{next(_stores)}"
        client = kvkit.Client(settings=kvkit.Settings(url=f"memory://{name}", prefix=PREFIX))
        cache = client.cache
        try:
            cache.set("warm", 0, ttl=TTL)  # create the store before measuring
            return _bytes_per_item(lambda key, value: cache.set(key, value, ttl=TTL))
        finally:
            cache.clear()
            client.close()

    def cachetools_bytes() -> float:
        peer: TTLCache[str, bytes] = TTLCache(maxsize=2 * ITEMS, ttl=TTL)
        dumps = json.dumps

        def store(key: str, value: Any) -> None:
            peer[f"{PREFIX}:cache:{key}"] = dumps(value).encode()

        return _bytes_per_item(store)

    return Case(kvkit_bytes, cachetools_bytes)


_stores = itertools.count()

register(
    "memory",
    "bytes per cached item",
    mode="timed",
    backend="memory://",
    baseline="cachetools TTLCache + json bytes",
    ops=1,
    needs_redis=False,
    unit="B/item",
    note=f"tracemalloc, {ITEMS:,} items of the cache value with a TTL; ratio = cachetools "
    "bytes / kvkit bytes (> 1: kvkit stores less)",
)(_memory_size)
