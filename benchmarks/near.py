"""Part II rows: the near cache on a hot key, and the server's own ceiling.

* ``cache.get [near cache, hot key]``: a kvkit client with ``?near_cache=1000`` reading
  one key it read before (served in-process, kept coherent by client tracking) against
  redis-py / redis.asyncio ``GET`` + ``json`` of the same value.
* ``cache.get async x50 tasks, share of redis-benchmark -c 50``: kvkit's auto-pipelined
  ``cache.get`` from 50 tasks against ``redis-benchmark -c 50 -t get`` on the same server
  (50 connections, C, no decoding): the ratio is kvkit's share of what the server
  delivers to 50 un-pipelined clients.

The coherence figures (delay until another process's write is seen) come from
``python -m benchmarks.coherence``: they are latencies, not ratios.
"""

from __future__ import annotations

import asyncio
import functools
import re
import shutil
import subprocess
import time
from typing import Any

from .common import (
    BASE_KEY,
    CODECS,
    KEY,
    KVKIT_KEY,
    TTL,
    VALUE,
    aassert_same_server,
    assert_same_server,
    host_port,
    kvkit_async,
    kvkit_sync,
    redis_async,
    redis_sync,
)
from .harness import CONCURRENCY, Case, Env, Skip, register

NEAR = "near_cache=1000"
_TAGS = ("near",)


def _sync_near(env: Env) -> Case:
    dumps, loads = CODECS["json"]()
    client = kvkit_sync(env, NEAR)
    cache = client.cache
    raw = redis_sync(env)
    cache.set(KEY, VALUE, ttl=TTL)
    raw.set(BASE_KEY, dumps(VALUE), ex=TTL)
    assert_same_server(raw, KVKIT_KEY)
    _until_near(lambda: cache.get(KEY), cache)

    def teardown() -> None:
        client.close()
        raw.close()

    def check() -> None:
        if cache.stats.near_hits < cache.stats.hits // 2:
            raise RuntimeError("the near-cache row was not served from the near cache")

    return Case(lambda: cache.get(KEY), lambda: loads(raw.get(BASE_KEY)), teardown, check)


def _until_near(read: Any, cache: Any) -> None:
    deadline = time.monotonic() + 5
    while True:
        before = cache.stats.near_hits
        if read() != VALUE:
            raise RuntimeError("the near-cache row does not read the value back")
        if cache.stats.near_hits > before:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("the key never became a near-cache hit")
        time.sleep(0.01)


register(
    "cache",
    "cache.get [near cache, hot key]",
    mode="sync",
    baseline="redis-py GET + json",
    target=20.0,
    ops=20000,
    tags=_TAGS,
    note="near cache: ?near_cache=1000, the key read once before (then served in-process)",
)(_sync_near)


async def _async_near(env: Env) -> Case:
    dumps, loads = CODECS["json"]()
    client = kvkit_async(env, NEAR)
    cache = client.cache
    raw = redis_async(env)
    await cache.set(KEY, VALUE, ttl=TTL)
    await raw.set(BASE_KEY, dumps(VALUE), ex=TTL)
    await aassert_same_server(raw, KVKIT_KEY)
    deadline = time.monotonic() + 5
    while cache.stats.near_hits == 0:
        if await cache.get(KEY) != VALUE:
            raise RuntimeError("the near-cache row does not read the value back")
        if time.monotonic() > deadline:
            raise RuntimeError("the key never became a near-cache hit")
        await asyncio.sleep(0.01)

    async def kvkit_get() -> Any:
        return await cache.get(KEY)

    async def base_get() -> Any:
        return loads(await raw.get(BASE_KEY))

    async def teardown() -> None:
        await client.aclose()
        await raw.aclose()

    def check() -> None:
        if cache.stats.near_hits < cache.stats.hits // 2:
            raise RuntimeError("the near-cache row was not served from the near cache")

    return Case(kvkit_get, base_get, teardown, check)


register(
    "cache",
    "cache.get [near cache, hot key]",
    mode="async",
    baseline="redis.asyncio GET + json",
    target=20.0,
    ops=20000,
    tags=_TAGS,
)(_async_near)


# --------------------------------------------------------------------------- the ceiling

_RPS = re.compile(rb"GET: ([0-9.]+) requests per second")
BATCH = 10_000
"""Requests per measurement on each side (redis-benchmark's -n; kvkit: 50 tasks x 200)."""


async def _ceiling(env: Env, pipeline: int = 1) -> Case:
    tool = shutil.which("redis-benchmark")
    if tool is None:
        raise Skip("redis-benchmark is not on PATH")
    host, port, db, password = host_port(env)
    client = kvkit_async(env)
    cache = client.cache
    await cache.set(KEY, VALUE, ttl=TTL)
    command = [tool, "-h", host, "-p", str(port), "-c", str(CONCURRENCY), "-n", str(BATCH)]
    command += ["-t", "get", "-q", "--dbnum", str(db), "-P", str(pipeline)]
    if password:
        command += ["-a", password]  # a benchmark server's throwaway password

    async def kvkit_batch() -> float:
        per_task = BATCH // CONCURRENCY

        async def worker() -> None:
            for _ in range(per_task):
                await cache.get(KEY)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return time.perf_counter() - start

    async def server_batch() -> float:
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        out, _ = await proc.communicate()
        found = _RPS.findall(out)
        if not found:
            raise RuntimeError(f"unexpected redis-benchmark output: {out[-200:]!r}")
        return BATCH / float(found[-1])

    async def teardown() -> None:
        await client.aclose()

    return Case(kvkit_batch, server_batch, teardown)


register(
    "cache",
    "cache.get async x50 tasks: share of redis-benchmark -c 50",
    mode="timed",
    baseline="redis-benchmark -c 50 -t get (the server's ceiling)",
    ops=8,
    items=BATCH,
    unit="items/s",
    tags=("ceiling",),
    note=(
        "ceiling: redis-benchmark -c 50 -n 10000 -t get on the same server (50 connections, "
        "C, no decoding; -P 16: 16 requests pipelined per connection); kvkit: 50 tasks x 200 "
        "cache.get with decoding; ratio = kvkit ops/s / redis-benchmark's"
    ),
)(_ceiling)
register(
    "cache",
    "cache.get async x50 tasks: share of redis-benchmark -c 50 -P 16",
    mode="timed",
    baseline="redis-benchmark -c 50 -P 16 -t get (pipelined ceiling)",
    ops=8,
    items=BATCH,
    unit="items/s",
    tags=("ceiling",),
)(functools.partial(_ceiling, pipeline=16))
