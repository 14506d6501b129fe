"""``cache`` rows on redis://: kvkit vs redis-py + json/orjson, cashews, aiocache.

Every kvkit row writes and reads ``kvbench:cache:user:123``; the redis-py baselines use
``kvbench:bases:user:123`` and the peers ``kvbench:peers:user:123`` (same length, so the
same bytes on the wire). Each side reads what it wrote itself with its own codec.
"""

from __future__ import annotations

import functools
from typing import Any

from .common import (
    BASE_KEY,
    CODECS,
    KEY,
    KVKIT_KEY,
    MANY,
    PREFIX,
    TTL,
    VALUE,
    aassert_same_server,
    assert_same_server,
    host_port,
    kvkit_async,
    kvkit_sync,
    many_keys,
    many_values,
    redis_async,
    redis_sync,
)
from .harness import Case, Env, Mode, Skip, register

PEER_KEY = f"{PREFIX}:peers:{KEY}"

# Tags --only accepts besides the group ("cache") and the mode (sync/async/concurrent).
_PEERS = ("peers",)
_MANY = ("many",)

# --------------------------------------------------------------------------- sync


def _sync_single(env: Env, op: str, codec: str, options: str = "") -> Case:
    dumps, loads = CODECS[codec]()
    client = kvkit_sync(env, options)
    cache = client.cache
    raw = redis_sync(env)
    cache.set(KEY, VALUE, ttl=TTL)
    raw.set(BASE_KEY, dumps(VALUE), ex=TTL)
    assert_same_server(raw, KVKIT_KEY)

    def teardown() -> None:
        client.close()
        raw.close()

    if op == "get":

        def kvkit_get() -> Any:
            return cache.get(KEY)

        def base_get() -> Any:
            return loads(raw.get(BASE_KEY))

        if kvkit_get() != VALUE or base_get() != VALUE:
            raise RuntimeError("the get rows do not read the value back")
        return Case(kvkit_get, base_get, teardown)

    def kvkit_set() -> None:
        cache.set(KEY, VALUE, ttl=TTL)

    def base_set() -> None:
        raw.set(BASE_KEY, dumps(VALUE), ex=TTL)

    def check() -> None:
        if cache.get(KEY) != VALUE or loads(raw.get(BASE_KEY)) != VALUE:
            raise RuntimeError("the set rows did not store the value")

    return Case(kvkit_set, base_set, teardown, check)


for _op, _base in (("get", "GET"), ("set", "SET EX")):
    for _codec, _target in (("json", 1.0), ("orjson", 0.95)):
        register(
            "cache",
            f"cache.{_op}",
            mode="sync",
            baseline=f"redis-py {_base} + {_codec}",
            target=_target,
            ops=4000,
        )(functools.partial(_sync_single, op=_op, codec=_codec))


def _sync_many(env: Env, op: str, codec: str) -> Case:
    dumps, loads = CODECS[codec]()
    client = kvkit_sync(env)
    cache = client.cache
    raw = redis_sync(env)
    keys = many_keys()
    mapping = many_values()
    base_keys = [f"{PREFIX}:bases:{k}" for k in keys]
    base_mapping = {f"{PREFIX}:bases:{k}": v for k, v in mapping.items()}
    cache.set_many(mapping, ttl=TTL)
    assert_same_server(raw, f"{PREFIX}:cache:{keys[0]}")

    def base_set_many() -> None:
        pipe = raw.pipeline()  # MULTI/EXEC like kvkit's (readers never see half a batch)
        for k, v in base_mapping.items():
            pipe.set(k, dumps(v), ex=TTL)
        pipe.execute()

    def base_get_many() -> dict[str, Any]:
        return {
            k: loads(v) for k, v in zip(keys, raw.mget(base_keys), strict=True) if v is not None
        }

    base_set_many()

    def teardown() -> None:
        client.close()
        raw.close()

    def check() -> None:
        if cache.get_many(keys) != mapping or base_get_many() != mapping:
            raise RuntimeError("the *_many rows do not agree on the stored values")

    if op == "get_many":
        return Case(lambda: cache.get_many(keys), base_get_many, teardown, check)
    return Case(lambda: cache.set_many(mapping, ttl=TTL), base_set_many, teardown, check)


for _codec in ("json", "orjson"):
    register(
        "cache",
        f"cache.get_many({MANY})",
        mode="sync",
        baseline=f"redis-py MGET + {_codec}",
        target=0.9,
        ops=500,
        items=MANY,
        tags=_MANY,
    )(functools.partial(_sync_many, op="get_many", codec=_codec))
for _codec in ("json", "orjson"):
    register(
        "cache",
        f"cache.set_many({MANY})",
        mode="sync",
        baseline=f"redis-py MULTI pipeline of SET EX + {_codec}",
        ops=250,
        items=MANY,
        tags=_MANY,
    )(functools.partial(_sync_many, op="set_many", codec=_codec))


# --------------------------------------------------------------------------- async


async def _async_single(env: Env, op: str, codec: str, options: str = "") -> Case:
    dumps, loads = CODECS[codec]()
    client = kvkit_async(env, options)
    cache = client.cache
    raw = redis_async(env)
    await cache.set(KEY, VALUE, ttl=TTL)
    await raw.set(BASE_KEY, dumps(VALUE), ex=TTL)
    await aassert_same_server(raw, KVKIT_KEY)

    async def teardown() -> None:
        await client.aclose()
        await raw.aclose()

    if op == "get":

        async def kvkit_get() -> Any:
            return await cache.get(KEY)

        async def base_get() -> Any:
            return loads(await raw.get(BASE_KEY))

        if await kvkit_get() != VALUE or await base_get() != VALUE:
            raise RuntimeError("the get rows do not read the value back")
        return Case(kvkit_get, base_get, teardown)

    async def kvkit_set() -> None:
        await cache.set(KEY, VALUE, ttl=TTL)

    async def base_set() -> None:
        await raw.set(BASE_KEY, dumps(VALUE), ex=TTL)

    async def check() -> None:
        if await cache.get(KEY) != VALUE or loads(await raw.get(BASE_KEY)) != VALUE:
            raise RuntimeError("the set rows did not store the value")

    return Case(kvkit_set, base_set, teardown, check)


async def _cashews_single(env: Env, op: str) -> Case:
    try:
        from cashews import Cache
    except ImportError:
        raise Skip("cashews is not installed (pip install cashews)") from None
    host, port, db, password = host_port(env)
    client = kvkit_async(env)
    cache = client.cache
    peer = Cache()
    # cashews' defaults (pickle values, errors suppressed) except the pool: kvkit's size
    # and kind (cashews also uses a BlockingConnectionPool) and kvkit's socket timeout.
    url = f"redis://{host}:{port}/{db}"
    peer.setup(url, password=password, max_connections=20, socket_timeout=5.0)
    await peer.init()
    await cache.set(KEY, VALUE, ttl=TTL)
    await peer.set(PEER_KEY, VALUE, expire=TTL)
    await _peer_sees(env, KVKIT_KEY)

    async def teardown() -> None:
        await client.aclose()
        await peer.close()

    if op == "get":

        async def kvkit_get() -> Any:
            return await cache.get(KEY)

        async def peer_get() -> Any:
            return await peer.get(PEER_KEY)

        if await kvkit_get() != VALUE or await peer_get() != VALUE:
            raise RuntimeError("the get rows do not read the value back")
        return Case(kvkit_get, peer_get, teardown)

    async def kvkit_set() -> None:
        await cache.set(KEY, VALUE, ttl=TTL)

    async def peer_set() -> None:
        await peer.set(PEER_KEY, VALUE, expire=TTL)

    return Case(kvkit_set, peer_set, teardown)


async def _aiocache_single(env: Env, op: str) -> Case:
    try:
        from aiocache import RedisCache
    except ImportError:
        raise Skip("aiocache is not installed (pip install aiocache)") from None
    from redis.asyncio import BlockingConnectionPool

    host, port, db, password = host_port(env)
    client = kvkit_async(env)
    cache = client.cache
    # aiocache's defaults (JsonSerializer, 5 s per-call timeout) with kvkit's pool.
    peer = RedisCache(
        endpoint=host,
        port=port,
        db=db,
        password=password,
        pool_max_size=20,
        connection_pool_class=BlockingConnectionPool,
        connection_pool_kwargs={"timeout": 5.0, "socket_timeout": 5.0},
    )
    await cache.set(KEY, VALUE, ttl=TTL)
    await peer.set(PEER_KEY, VALUE, ttl=TTL)
    await _peer_sees(env, KVKIT_KEY)

    async def teardown() -> None:
        await client.aclose()
        await peer.close()

    if op == "get":

        async def kvkit_get() -> Any:
            return await cache.get(KEY)

        async def peer_get() -> Any:
            return await peer.get(PEER_KEY)

        if await kvkit_get() != VALUE or await peer_get() != VALUE:
            raise RuntimeError("the get rows do not read the value back")
        return Case(kvkit_get, peer_get, teardown)

    async def kvkit_set() -> None:
        await cache.set(KEY, VALUE, ttl=TTL)

    async def peer_set() -> None:
        await peer.set(PEER_KEY, VALUE, ttl=TTL)

    return Case(kvkit_set, peer_set, teardown)


async def _peer_sees(env: Env, full_key: str) -> None:
    raw = redis_async(env)
    try:
        await aassert_same_server(raw, full_key)
    finally:
        await raw.aclose()


_ASYNC_MODES: tuple[tuple[Mode, int], ...] = (("async", 3000), ("concurrent", 5000))
for _mode, _ops in _ASYNC_MODES:
    for _op, _base in (("get", "GET"), ("set", "SET EX")):
        register(
            "cache",
            f"cache.{_op}",
            mode=_mode,
            baseline=f"redis.asyncio {_base} + json",
            # Auto-pipelining: tasks of one loop share round trips.
            target=3.0 if (_mode, _op) == ("concurrent", "get") else 1.0,
            ops=_ops,
        )(functools.partial(_async_single, op=_op, codec="json"))
        if _mode == "async":
            register(
                "cache",
                f"cache.{_op}",
                mode=_mode,
                baseline=f"redis.asyncio {_base} + orjson",
                target=0.95,
                ops=_ops,
            )(functools.partial(_async_single, op=_op, codec="orjson"))
        register(
            "cache",
            f"cache.{_op}",
            mode=_mode,
            baseline="cashews (redis://, default pickle)",
            target=1.0,
            ahead=True,
            ops=_ops,
            tags=_PEERS,
        )(functools.partial(_cashews_single, op=_op))
        register(
            "cache",
            f"cache.{_op}",
            mode=_mode,
            baseline="aiocache RedisCache (default json)",
            target=1.0,
            ahead=True,
            ops=_ops,
            tags=_PEERS,
        )(functools.partial(_aiocache_single, op=_op))


async def _async_many(env: Env, op: str) -> Case:
    dumps, loads = CODECS["json"]()
    client = kvkit_async(env)
    cache = client.cache
    raw = redis_async(env)
    keys = many_keys()
    mapping = many_values()
    base_keys = [f"{PREFIX}:bases:{k}" for k in keys]
    base_mapping = {f"{PREFIX}:bases:{k}": v for k, v in mapping.items()}
    await cache.set_many(mapping, ttl=TTL)
    await aassert_same_server(raw, f"{PREFIX}:cache:{keys[0]}")

    async def base_set_many() -> None:
        pipe = raw.pipeline()
        for k, v in base_mapping.items():
            pipe.set(k, dumps(v), ex=TTL)
        await pipe.execute()

    async def base_get_many() -> dict[str, Any]:
        values = await raw.mget(base_keys)
        return {k: loads(v) for k, v in zip(keys, values, strict=True) if v is not None}

    async def kvkit_get_many() -> dict[str, Any]:
        return await cache.get_many(keys)

    async def kvkit_set_many() -> None:
        await cache.set_many(mapping, ttl=TTL)

    await base_set_many()

    async def teardown() -> None:
        await client.aclose()
        await raw.aclose()

    async def check() -> None:
        if await kvkit_get_many() != mapping or await base_get_many() != mapping:
            raise RuntimeError("the *_many rows do not agree on the stored values")

    if op == "get_many":
        return Case(kvkit_get_many, base_get_many, teardown, check)
    return Case(kvkit_set_many, base_set_many, teardown, check)


register(
    "cache",
    f"cache.get_many({MANY})",
    mode="async",
    baseline="redis.asyncio MGET + json",
    target=0.9,
    ops=400,
    items=MANY,
    tags=_MANY,
)(functools.partial(_async_many, op="get_many"))
register(
    "cache",
    f"cache.set_many({MANY})",
    mode="async",
    baseline="redis.asyncio MULTI pipeline of SET EX + json",
    ops=200,
    items=MANY,
    tags=_MANY,
)(functools.partial(_async_many, op="set_many"))


# --------------------------------------------------------------------------- dogpile.cache


def _dogpile_single(env: Env, op: str) -> Case:
    try:
        from dogpile.cache import make_region
        from dogpile.cache.api import NO_VALUE
    except ImportError:
        raise Skip("dogpile.cache is not installed (pip install dogpile.cache)") from None
    host, port, db, password = host_port(env)
    client = kvkit_sync(env)
    cache = client.cache
    # dogpile's redis backend with its defaults (pickle, a metadata envelope per value)
    # except the pool: kvkit's size and socket timeout.
    region = make_region().configure(
        "dogpile.cache.redis",
        expiration_time=TTL,
        arguments={
            "host": host,
            "port": port,
            "db": db,
            "password": password,
            "redis_expiration_time": TTL,
            "connection_kwargs": {"max_connections": 20, "socket_timeout": 5.0},
        },
    )
    cache.set(KEY, VALUE, ttl=TTL)
    region.set(PEER_KEY, VALUE)

    def teardown() -> None:
        region.delete(PEER_KEY)
        client.close()

    if op == "get":

        def kvkit_get() -> Any:
            return cache.get(KEY)

        def peer_get() -> Any:
            value = region.get(PEER_KEY)
            return None if value is NO_VALUE else value

        if kvkit_get() != VALUE or peer_get() != VALUE:
            raise RuntimeError("the get rows do not read the value back")
        return Case(kvkit_get, peer_get, teardown)

    def kvkit_set() -> None:
        cache.set(KEY, VALUE, ttl=TTL)

    def peer_set() -> None:
        region.set(PEER_KEY, VALUE)

    return Case(kvkit_set, peer_set, teardown)


for _op in ("get", "set"):
    register(
        "cache",
        f"cache.{_op}",
        mode="sync",
        baseline="dogpile.cache redis backend (default pickle)",
        ops=4000,
        tags=_PEERS,
    )(functools.partial(_dogpile_single, op=_op))


# --------------------------------------------------------------------------- fakeredis


def _fakeredis_single(env: Env, op: str) -> Case:
    try:
        import fakeredis
    except ImportError:
        raise Skip("fakeredis is not installed (pip install kvkit-sdk[fakeredis])") from None
    import json

    import kvkit

    client = kvkit.Client(settings=kvkit.Settings(url="fakeredis://", prefix=PREFIX))
    cache = client.cache
    # A separate fake server: what a test suite using fakeredis directly would create.
    raw = fakeredis.FakeRedis()
    cache.set(KEY, VALUE, ttl=TTL)
    raw.set(BASE_KEY, json.dumps(VALUE), ex=TTL)

    def teardown() -> None:
        client.close()
        raw.close()

    if op == "get":

        def kvkit_get() -> Any:
            return cache.get(KEY)

        def base_get() -> Any:
            return json.loads(raw.get(BASE_KEY))  # type: ignore[arg-type]

        if kvkit_get() != VALUE or base_get() != VALUE:
            raise RuntimeError("the get rows do not read the value back")
        return Case(kvkit_get, base_get, teardown)

    def kvkit_set() -> None:
        cache.set(KEY, VALUE, ttl=TTL)

    def base_set() -> None:
        raw.set(BASE_KEY, json.dumps(VALUE), ex=TTL)

    return Case(kvkit_set, base_set, teardown)


for _op, _base in (("get", "GET"), ("set", "SET EX")):
    register(
        "cache",
        f"cache.{_op}",
        mode="sync",
        backend="fakeredis://",
        baseline=f"fakeredis.FakeRedis {_base} + json",
        ops=3000,
        tags=("fakeredis",),
    )(functools.partial(_fakeredis_single, op=_op))
