"""Profile kvkit's cache hot paths: ``python -m benchmarks.profiling``.

Two views per scenario (sync/async x redis/memory x get/set):

1. A *layer breakdown* in microseconds per operation (wall clock, and this process's
   CPU time): the bare storage call, the baseline a user would write, kvkit's driver
   and kvkit's public method. The differences between layers are what each layer costs.
2. A cProfile of kvkit's public method, sorted by ``tottime`` (``--top`` rows).

Usage::

    python -m benchmarks.profiling [--url URL] [--ops N] [--repeats N] [--top N]
                                   [--only redis-sync,redis-async,memory-sync,memory-async,
                                           redis-sync-many]

``--top 0`` skips cProfile. Layers are timed interleaved and the fastest repeat is shown
(interference from other processes only ever adds time).

It reaches into kvkit internals (``cache._driver``, ``backend.command``...) to time the
layers; a layer that no longer exists is reported as missing, not as an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import gc
import io
import pstats
import time
from collections.abc import Awaitable, Callable
from typing import Any

import kvkit

from .cli import _server
from .common import (
    BASE_KEY,
    KEY,
    KVKIT_KEY,
    PREFIX,
    TTL,
    VALUE,
    many_keys,
    many_values,
    redis_async,
    redis_sync,
)

SCENARIOS = (
    "redis-sync",
    "redis-async",
    "memory-sync",
    "memory-async",
    "redis-sync-many",
    "redis-async-50",
)
Layers = list[tuple[str, Callable[[], Any]]]


def _orjson() -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    import orjson

    return orjson.dumps, orjson.loads


# --------------------------------------------------------------------------- layers


def _redis_sync_layers(url: str, op: str) -> tuple[Layers, Callable[[], Any], Callable[[], None]]:
    dumps, loads = _orjson()
    client = kvkit.Client(settings=kvkit.Settings(url=url, prefix=PREFIX))
    cache = client.cache
    raw = redis_sync(_env(url))
    cache.set(KEY, VALUE, ttl=TTL)
    raw.set(BASE_KEY, dumps(VALUE), ex=TTL)
    driver = cache._driver
    codec = cache._codec
    pool = raw.connection_pool
    data = dumps(VALUE)
    layers: Layers = []
    if op == "get":

        def bare() -> Any:
            conn = pool.get_connection()
            try:
                conn.send_command("GET", BASE_KEY)
                return loads(conn.read_response())
            finally:
                pool.release(conn)

        layers += [
            ("bare connection GET + orjson", bare),
            ("redis-py r.get + orjson (baseline)", lambda: loads(raw.get(BASE_KEY))),
            ("redis-py r.get + json (baseline)", _json_get(raw)),
            ("kvkit driver.get + codec.decode", lambda: codec.decode(KEY, driver.get(KVKIT_KEY))),
            ("kvkit cache.get", lambda: cache.get(KEY)),
        ]
        target = lambda: cache.get(KEY)  # noqa: E731
    else:

        def bare_set() -> Any:
            conn = pool.get_connection()
            try:
                conn.send_command("SET", BASE_KEY, dumps(VALUE), "EX", TTL)
                return conn.read_response()
            finally:
                pool.release(conn)

        ttl_ms = TTL * 1000
        layers += [
            ("bare connection SET EX + orjson", bare_set),
            ("redis-py r.set + orjson (baseline)", lambda: raw.set(BASE_KEY, dumps(VALUE), ex=TTL)),
            ("redis-py r.set + json (baseline)", _json_set(raw)),
            (
                "kvkit driver.set + codec.encode",
                lambda: driver.set(KVKIT_KEY, codec.encode(KEY, VALUE), ttl_ms),
            ),
            ("kvkit cache.set", lambda: cache.set(KEY, VALUE, ttl=TTL)),
        ]
        target = lambda: cache.set(KEY, VALUE, ttl=TTL)  # noqa: E731
    layers += [
        ("  (codec.encode alone)", lambda: codec.encode(KEY, VALUE)),
        ("  (codec.decode alone)", lambda: codec.decode(KEY, data)),
        ("  (orjson.dumps alone)", lambda: dumps(VALUE)),
        ("  (orjson.loads alone)", lambda: loads(data)),
    ]

    def close() -> None:
        client.close()
        raw.close()

    return layers, target, close


def _redis_sync_many_layers(
    url: str, op: str
) -> tuple[Layers, Callable[[], Any], Callable[[], None]]:
    dumps, loads = _orjson()
    client = kvkit.Client(settings=kvkit.Settings(url=url, prefix=PREFIX))
    cache = client.cache
    raw = redis_sync(_env(url))
    keys = many_keys()
    mapping = many_values()
    full = [f"{PREFIX}:cache:{k}" for k in keys]
    base_keys = [f"{PREFIX}:bases:{k}" for k in keys]
    cache.set_many(mapping, ttl=TTL)
    for k, v in mapping.items():
        raw.set(f"{PREFIX}:bases:{k}", dumps(v), ex=TTL)
    driver = cache._driver
    codec = cache._codec
    pool = raw.connection_pool
    stored = raw.mget(full)
    decode = codec.decode
    layers: Layers = []
    if op == "get":

        def bare() -> Any:
            conn = pool.get_connection()
            try:
                conn.send_command("MGET", *base_keys)
                return conn.read_response()
            finally:
                pool.release(conn)

        def base() -> dict[str, Any]:
            values = raw.mget(base_keys)
            return {k: loads(v) for k, v in zip(keys, values, strict=True) if v is not None}

        def decode_loop() -> dict[str, Any]:
            return {k: decode(k, v) for k, v in zip(keys, stored, strict=True) if v is not None}

        def loads_loop() -> dict[str, Any]:
            return {k: loads(v) for k, v in zip(keys, stored, strict=True) if v is not None}

        from kvkit._keys import validate_keys

        layers += [
            ("bare connection MGET x100 (no decode)", bare),
            ("redis-py r.mget x100 (no decode)", lambda: raw.mget(base_keys)),
            ("redis-py MGET + orjson dict (baseline)", base),
            ("kvkit driver.get_many x100 (no decode)", lambda: driver.get_many(full)),
            ("kvkit cache.get_many(100)", lambda: cache.get_many(keys)),
            ("  (codec.decode dict-comp x100)", decode_loop),
            ("  (orjson.loads dict-comp x100)", loads_loop),
            ("  (validate_keys x100)", lambda: validate_keys(keys)),
        ]
        target = lambda: cache.get_many(keys)  # noqa: E731
    else:
        ttl_ms = TTL * 1000
        encoded = [(f"{PREFIX}:cache:{k}", codec.encode(k, v)) for k, v in mapping.items()]

        def base_set() -> None:
            pipe = raw.pipeline()
            for k, v in mapping.items():
                pipe.set(f"{PREFIX}:bases:{k}", dumps(v), ex=TTL)
            pipe.execute()

        layers += [
            ("redis-py MULTI pipeline SET EX + orjson", base_set),
            ("kvkit driver.set_many x100 (pre-encoded)", lambda: driver.set_many(encoded, ttl_ms)),
            ("kvkit cache.set_many(100)", lambda: cache.set_many(mapping, ttl=TTL)),
            (
                "  (codec.encode x100)",
                lambda: [codec.encode(k, v) for k, v in mapping.items()],
            ),
        ]
        target = lambda: cache.set_many(mapping, ttl=TTL)  # noqa: E731

    def close() -> None:
        client.close()
        raw.close()

    return layers, target, close


def _json_get(raw: Any) -> Callable[[], Any]:
    import json

    loads = json.loads
    return lambda: loads(raw.get(BASE_KEY))


def _json_set(raw: Any) -> Callable[[], Any]:
    import json

    dumps = json.dumps
    return lambda: raw.set(BASE_KEY, dumps(VALUE), ex=TTL)


async def _redis_async_layers(
    url: str, op: str
) -> tuple[Layers, Callable[[], Awaitable[Any]], Callable[[], Awaitable[None]]]:
    dumps, loads = _orjson()
    client = kvkit.AsyncClient(settings=kvkit.Settings(url=url, prefix=PREFIX))
    cache = client.cache
    raw = redis_async(_env(url))
    await cache.set(KEY, VALUE, ttl=TTL)
    await raw.set(BASE_KEY, dumps(VALUE), ex=TTL)
    driver = cache._driver
    codec = cache._codec
    pool = raw.connection_pool
    layers: Layers = []
    if op == "get":

        async def bare() -> Any:
            conn = await pool.get_connection()
            try:
                await conn.send_command("GET", BASE_KEY)
                return loads(await conn.read_response())
            finally:
                await pool.release(conn)

        async def base() -> Any:
            return loads(await raw.get(BASE_KEY))

        async def drv() -> Any:
            return codec.decode(KEY, await driver.get(KVKIT_KEY))

        async def kv() -> Any:
            return await cache.get(KEY)

        layers += [
            ("bare connection GET + orjson", bare),
            ("redis.asyncio r.get + orjson (baseline)", base),
            ("kvkit driver.get + codec.decode", drv),
            ("kvkit cache.get", kv),
        ]
    else:
        ttl_ms = TTL * 1000

        async def bare() -> Any:
            conn = await pool.get_connection()
            try:
                await conn.send_command("SET", BASE_KEY, dumps(VALUE), "EX", TTL)
                return await conn.read_response()
            finally:
                await pool.release(conn)

        async def base() -> Any:
            return await raw.set(BASE_KEY, dumps(VALUE), ex=TTL)

        async def drv() -> Any:
            return await driver.set(KVKIT_KEY, codec.encode(KEY, VALUE), ttl_ms)

        async def kv() -> Any:
            return await cache.set(KEY, VALUE, ttl=TTL)

        layers += [
            ("bare connection SET EX + orjson", bare),
            ("redis.asyncio r.set + orjson (baseline)", base),
            ("kvkit driver.set + codec.encode", drv),
            ("kvkit cache.set", kv),
        ]

    async def close() -> None:
        await client.aclose()
        await raw.aclose()

    return layers, kv, close


def _memory_sync_layers(op: str) -> tuple[Layers, Callable[[], Any], Callable[[], None]]:
    import json

    from cachetools import TTLCache

    dumps, _ = _orjson()
    client = kvkit.Client(settings=kvkit.Settings(url="memory://", prefix=PREFIX))
    cache = client.cache
    cache.set(KEY, VALUE, ttl=TTL)
    driver = cache._driver
    space = getattr(driver, "_space", None)
    codec = cache._codec
    peer: TTLCache[str, bytes] = TTLCache(maxsize=10_000, ttl=TTL)
    peer[KVKIT_KEY] = json.dumps(VALUE).encode()
    ttl_ms = TTL * 1000
    layers: Layers = []
    if op == "get":
        if space is not None:
            layers.append(("engine space.get (bytes)", lambda: space.get(KVKIT_KEY)))
        layers += [
            ("cachetools TTLCache get + json (baseline)", lambda: json.loads(peer[KVKIT_KEY])),
            ("kvkit driver.get + codec.decode", lambda: codec.decode(KEY, driver.get(KVKIT_KEY))),
            ("kvkit cache.get", lambda: cache.get(KEY)),
        ]
        target = lambda: cache.get(KEY)  # noqa: E731
    else:
        data = dumps(VALUE)
        if space is not None:
            layers.append(("engine space.set (bytes)", lambda: space.set(KVKIT_KEY, data, ttl_ms)))
        layers += [
            (
                "cachetools TTLCache set + json (baseline)",
                lambda: peer.__setitem__(KVKIT_KEY, json.dumps(VALUE).encode()),
            ),
            (
                "kvkit driver.set + codec.encode",
                lambda: driver.set(KVKIT_KEY, codec.encode(KEY, VALUE), ttl_ms),
            ),
            ("kvkit cache.set", lambda: cache.set(KEY, VALUE, ttl=TTL)),
        ]
        target = lambda: cache.set(KEY, VALUE, ttl=TTL)  # noqa: E731
    return layers, target, client.close


async def _memory_async_layers(
    op: str,
) -> tuple[Layers, Callable[[], Awaitable[Any]], Callable[[], Awaitable[None]]]:
    client = kvkit.AsyncClient(settings=kvkit.Settings(url="memory://", prefix=PREFIX))
    cache = client.cache
    await cache.set(KEY, VALUE, ttl=TTL)
    driver = cache._driver
    codec = cache._codec
    ttl_ms = TTL * 1000
    layers: Layers = []
    try:
        from cashews import Cache

        peer = Cache()
        peer.setup("mem://", size=10_000)
        await peer.init()
        await peer.set(KEY, VALUE, expire=TTL)
    except ImportError:
        peer = None

    async def noop() -> None:
        return None

    layers.append(("empty coroutine (await overhead)", noop))
    if op == "get":

        async def drv() -> Any:
            return codec.decode(KEY, await driver.get(KVKIT_KEY))

        async def kv() -> Any:
            return await cache.get(KEY)

        if peer is not None:

            async def cashews_get() -> Any:
                return await peer.get(KEY)

            layers.append(("cashews mem:// get (baseline)", cashews_get))
        layers += [("kvkit driver.get + codec.decode", drv), ("kvkit cache.get", kv)]
    else:

        async def drv() -> Any:
            return await driver.set(KVKIT_KEY, codec.encode(KEY, VALUE), ttl_ms)

        async def kv() -> Any:
            return await cache.set(KEY, VALUE, ttl=TTL)

        if peer is not None:

            async def cashews_set() -> Any:
                return await peer.set(KEY, VALUE, expire=TTL)

            layers.append(("cashews mem:// set (baseline)", cashews_set))
        layers += [("kvkit driver.set + codec.encode", drv), ("kvkit cache.set", kv)]

    async def close() -> None:
        await client.aclose()
        if peer is not None:
            await peer.close()

    return layers, kv, close


def _env(url: str) -> Any:
    from .harness import Env

    return Env(url=url)


# --------------------------------------------------------------------------- timing


_cpu = time.process_time
"""CPU seconds of this process (user + system: Linux splits the two only by sampling)."""


def _measure_sync(layers: Layers, n: int, repeats: int) -> list[tuple[str, float, float]]:
    """``(label, user CPU us/op, wall us/op)``: minimum over repeats, layers interleaved.

    The minimum, as ``timeit`` recommends: interference from other processes only ever
    adds time, so the fastest repeat is the best estimate of the cost itself.
    """
    for _, fn in layers:
        for _ in range(max(1, n // 10)):
            fn()
    cpu: list[list[float]] = [[] for _ in layers]
    wall: list[list[float]] = [[] for _ in layers]
    for rep in range(repeats):
        order = list(range(len(layers)))
        if rep % 2:
            order.reverse()
        for i in order:
            fn = layers[i][1]
            gc.collect()
            c0, w0 = _cpu(), time.perf_counter()
            for _ in range(n):
                fn()
            cpu[i].append((_cpu() - c0) / n * 1e6)
            wall[i].append((time.perf_counter() - w0) / n * 1e6)
    return [(label, min(c), min(w)) for (label, _), c, w in zip(layers, cpu, wall, strict=True)]


async def _measure_async(layers: Layers, n: int, repeats: int) -> list[tuple[str, float, float]]:
    for _, fn in layers:
        for _ in range(max(1, n // 10)):
            await fn()
    cpu: list[list[float]] = [[] for _ in layers]
    wall: list[list[float]] = [[] for _ in layers]
    for rep in range(repeats):
        order = list(range(len(layers)))
        if rep % 2:
            order.reverse()
        for i in order:
            fn = layers[i][1]
            gc.collect()
            c0, w0 = _cpu(), time.perf_counter()
            for _ in range(n):
                await fn()
            cpu[i].append((_cpu() - c0) / n * 1e6)
            wall[i].append((time.perf_counter() - w0) / n * 1e6)
    return [(label, min(c), min(w)) for (label, _), c, w in zip(layers, cpu, wall, strict=True)]


def _print_layers(title: str, rows: list[tuple[str, float, float]]) -> None:
    print(f"\n== {title} (best of repeats, us per op) ==")
    print(f"  {'layer':<46} {'wall':>9} {'CPU':>9}")
    for label, cpu, wall in rows:
        print(f"  {label:<46} {wall:9.2f} {cpu:9.2f}")


def _print_profile(profile: cProfile.Profile, top: int) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    # Drop pstats' preamble lines; keep the call count line and the table.
    lines = [line for line in text.splitlines() if line.strip()]
    print("\n".join("    " + line for line in lines[1:]))


def profile_sync(
    title: str,
    layers: Layers,
    target: Callable[[], Any],
    n: int,
    repeats: int,
    top: int,
) -> None:
    """Print the layer breakdown and the cProfile of ``target`` (a sync op)."""
    _print_layers(title, _measure_sync(layers, n, repeats))
    if top:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(n):
            target()
        profile.disable()
        print(f"\n  cProfile of {n} calls, by tottime:")
        _print_profile(profile, top)


async def profile_async(
    title: str,
    layers: Layers,
    target: Callable[[], Awaitable[Any]],
    n: int,
    repeats: int,
    top: int,
) -> None:
    """Async :func:`profile_sync`."""
    _print_layers(title, await _measure_async(layers, n, repeats))
    if top:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(n):
            await target()
        profile.disable()
        print(f"\n  cProfile of {n} calls, by tottime:")
        _print_profile(profile, top)


def _run_sync_layers(item: Any, title: str, args: Any, n: int) -> None:
    layers, target, close = item
    try:
        profile_sync(title, layers, target, n, args.repeats, args.top)
    finally:
        close()


def main(argv: list[str] | None = None) -> int:
    """Profile the selected scenarios and print the results."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling")
    parser.add_argument("--url", help="Redis server (default: a private redis-server)")
    parser.add_argument("--ops", type=int, default=2000, help="calls per measurement")
    parser.add_argument("--repeats", type=int, default=21, help="measurements per layer")
    parser.add_argument("--top", type=int, default=22, help="cProfile rows (0: no cProfile)")
    parser.add_argument("--only", default=",".join(SCENARIOS[:4]), help=",".join(SCENARIOS))
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    for name in wanted:
        if name not in SCENARIOS:
            raise SystemExit(f"--only: unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    needs_redis = any(s.startswith("redis") for s in wanted)
    server = _server(args.url) if needs_redis else contextlib.nullcontext((None, "none"))
    with server as (url, _):
        for scenario in wanted:
            for op in ("get", "set"):
                title = f"{scenario} cache.{op}{'_many(100)' if scenario.endswith('many') else ''}"
                if scenario.startswith("redis") and url is None:
                    print(f"\n== {title}: skipped (no Redis server) ==")
                    continue
                if scenario.startswith("memory"):
                    n = args.ops * 10
                elif scenario.endswith("many"):
                    n = max(1, args.ops // 20)
                else:
                    n = args.ops
                if scenario == "redis-async-50":
                    assert url is not None
                    asyncio.run(_concurrent_scenario(url, op, title, args, n))
                elif scenario == "redis-sync":
                    assert url is not None
                    _run_sync_layers(_redis_sync_layers(url, op), title, args, n)
                elif scenario == "redis-sync-many":
                    assert url is not None
                    _run_sync_layers(_redis_sync_many_layers(url, op), title, args, n)
                elif scenario == "memory-sync":
                    _run_sync_layers(_memory_sync_layers(op), title, args, n)
                else:
                    asyncio.run(_async_scenario(scenario, url, op, title, args, n))
    return 0


async def _concurrent_scenario(url: str, op: str, title: str, args: Any, n: int) -> None:
    """50 tasks sharing one client: ops/s of each side, then a cProfile of each kvkit mode.

    Where the time of ``cache.get``/``set`` goes when 50 tasks share a pool of 20: with
    ``auto_pipeline=false`` (one round trip, pool checkout and two asyncio timeouts per
    command) and auto-pipelined (one write per loop iteration for every task's command).
    """
    import json

    tasks = 50
    raw = redis_async(_env(url))
    clients = {
        "kvkit auto-pipelined": kvkit.AsyncClient(settings=kvkit.Settings(url=url, prefix=PREFIX)),
        "kvkit auto_pipeline=false": kvkit.AsyncClient(
            settings=kvkit.Settings(url=f"{url}?auto_pipeline=false", prefix=PREFIX)
        ),
    }
    data = json.dumps(VALUE)
    await raw.set(BASE_KEY, data, ex=TTL)
    sides: dict[str, Callable[[], Awaitable[Any]]] = {}
    for name, client in clients.items():
        cache = client.cache
        await cache.set(KEY, VALUE, ttl=TTL)
        sides[name] = (
            functools.partial(cache.get, KEY)
            if op == "get"
            else functools.partial(cache.set, KEY, VALUE, ttl=TTL)
        )

    async def base_get() -> Any:
        return json.loads(await raw.get(BASE_KEY))

    async def base_set() -> Any:
        return await raw.set(BASE_KEY, json.dumps(VALUE), ex=TTL)

    sides["redis.asyncio + json (baseline)"] = base_get if op == "get" else base_set

    async def drive(fn: Callable[[], Awaitable[Any]], count: int) -> float:
        async def worker() -> None:
            for _ in range(count // tasks):
                await fn()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(tasks)))
        return time.perf_counter() - start

    try:
        count = max(tasks, n * 5)
        best = dict.fromkeys(sides, float("inf"))
        for _ in range(max(3, args.repeats // 4)):
            for name, fn in sides.items():  # interleaved; the fastest repeat counts
                best[name] = min(best[name], await drive(fn, count))
        print(f"\n== {title}, {tasks} tasks: ops/s (best of interleaved repeats) ==")
        for name, seconds in best.items():
            print(f"  {name:<40} {count / seconds:>12,.0f}")
        if args.top:
            for name in clients:
                profile = cProfile.Profile()
                profile.enable()
                await drive(sides[name], count)
                profile.disable()
                print(f"\n  cProfile of {name}, {count} calls from {tasks} tasks, by tottime:")
                _print_profile(profile, args.top)
    finally:
        for client in clients.values():
            await client.aclose()
        await raw.aclose()


async def _async_scenario(
    scenario: str, url: str | None, op: str, title: str, args: Any, n: int
) -> None:
    if scenario == "redis-async":
        assert url is not None
        layers, target, close = await _redis_async_layers(url, op)
    else:
        layers, target, close = await _memory_async_layers(op)
    try:
        await profile_async(title, layers, target, n, args.repeats, args.top)
    finally:
        await close()


if __name__ == "__main__":
    raise SystemExit(main())
