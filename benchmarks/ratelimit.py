"""``ratelimit`` rows: ``limiter.hit`` (exact sliding window) vs ``limits`` and raw redis-py.

Both sides limit one key with a rate high enough that every hit is admitted (the
expensive path: the hit is recorded), so both keep a log of recent hits in Redis:

* ``limits`` (``MovingWindowRateLimiter`` over its ``RedisStorage``; ``implementation=
  "redispy"`` on the async side, so both use redis-py): one Lua script per hit keeping a
  list of one timestamp per unit, on the *client's* clock; ``hit`` answers a bool only.
* raw redis-py: ``EVALSHA`` of kvkit's own sliding-window script with the same arguments
  (what kvkit costs on top of the one round trip it needs).

kvkit answers a full decision (remaining, reset and retry times) on the server's clock.
"""

from __future__ import annotations

import uuid
from typing import Any

from kvkit._lua import LuaScript
from kvkit._ratelimit_base import Rate, make_spec

from .common import PREFIX, kvkit_async, kvkit_sync, redis_async, redis_sync
from .harness import Case, Env, Skip, register

RATE = "1000000/60s"
"""Far above what a benchmark reaches: every hit is admitted and recorded."""

SCRIPT = LuaScript.load("ratelimit/sliding_window")
ARGS = [*make_spec(Rate.parse(RATE), "sliding_window", None).script_args, 1, 1]


def _key() -> str:
    return f"user:{uuid.uuid4().hex[:8]}"  # a fresh key per row: logs start empty


def _limits_sync(env: Env) -> Any:
    try:
        from limits import parse
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter
    except ImportError:
        raise Skip("limits is not installed (pip install limits)") from None
    if env.url is None:
        raise Skip("no Redis server")
    storage = storage_from_string(env.url, key_prefix=f"{PREFIX}-limits")
    return MovingWindowRateLimiter(storage), parse("1000000/minute")


def _limits_async(env: Env) -> Any:
    try:
        from limits import parse
        from limits.aio.strategies import MovingWindowRateLimiter
        from limits.storage import storage_from_string
    except ImportError:
        raise Skip("limits is not installed (pip install limits)") from None
    if env.url is None:
        raise Skip("no Redis server")
    url = "async+" + env.url
    storage = storage_from_string(url, implementation="redispy", key_prefix=f"{PREFIX}-limits")
    return MovingWindowRateLimiter(storage), parse("1000000/minute")


@register(
    "ratelimit",
    "limiter.hit",
    mode="sync",
    baseline="limits MovingWindowRateLimiter (RedisStorage) hit",
    target=1.0,
    tags=("peers",),
    note="every hit admitted; kvkit answers remaining/reset/retry, limits a bool",
)
def _sync_vs_limits(env: Env) -> Case:
    client = kvkit_sync(env)
    limiter = client.rate_limiter("bench", RATE)
    peer, item = _limits_sync(env)
    key = _key()

    def teardown() -> None:
        limiter.reset(key)
        peer.clear(item, key)
        client.close()

    return Case(lambda: limiter.hit(key), lambda: peer.hit(item, key), teardown)


@register(
    "ratelimit",
    "limiter.hit",
    mode="sync",
    baseline="redis-py EVALSHA of the same script",
    target=0.9,
)
def _sync_vs_raw(env: Env) -> Case:
    client = kvkit_sync(env)
    limiter = client.rate_limiter("bench", RATE)
    raw = redis_sync(env)
    raw.script_load(SCRIPT.source)
    key = _key()
    raw_key = f"{PREFIX}:limit:raw:{key}"

    def base() -> Any:
        allowed, remaining, reset_us, retry_us = raw.evalsha(SCRIPT.sha, 1, raw_key, *ARGS)
        return bool(allowed), remaining, reset_us / 1e6, None if allowed else retry_us / 1e6

    def teardown() -> None:
        limiter.reset(key)
        raw.delete(raw_key)
        client.close()
        raw.close()

    return Case(lambda: limiter.hit(key), base, teardown)


@register(
    "ratelimit",
    "limiter.hit",
    mode="async",
    baseline="limits.aio MovingWindowRateLimiter (redis.asyncio) hit",
    target=1.0,
    tags=("peers",),
    note="every hit admitted; kvkit answers remaining/reset/retry, limits a bool",
)
async def _async_vs_limits(env: Env) -> Case:
    client = kvkit_async(env)
    limiter = client.rate_limiter("bench", RATE)
    peer, item = _limits_async(env)
    key = _key()

    async def kvkit_op() -> Any:
        return await limiter.hit(key)

    async def base_op() -> Any:
        return await peer.hit(item, key)

    async def teardown() -> None:
        await limiter.reset(key)
        await peer.clear(item, key)
        await client.aclose()

    return Case(kvkit_op, base_op, teardown)


@register(
    "ratelimit",
    "limiter.hit",
    mode="async",
    baseline="redis.asyncio EVALSHA of the same script",
    target=0.9,
)
async def _async_vs_raw(env: Env) -> Case:
    client = kvkit_async(env)
    limiter = client.rate_limiter("bench", RATE)
    raw = redis_async(env)
    await raw.script_load(SCRIPT.source)
    key = _key()
    raw_key = f"{PREFIX}:limit:raw:{key}"

    async def kvkit_op() -> Any:
        return await limiter.hit(key)

    async def base_op() -> Any:
        allowed, remaining, reset_us, retry_us = await raw.evalsha(SCRIPT.sha, 1, raw_key, *ARGS)
        return bool(allowed), remaining, reset_us / 1e6, None if allowed else retry_us / 1e6

    async def teardown() -> None:
        await limiter.reset(key)
        await raw.delete(raw_key)
        await client.aclose()
        await raw.aclose()

    return Case(kvkit_op, base_op, teardown)
