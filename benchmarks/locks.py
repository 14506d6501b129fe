"""``locks`` rows: an uncontended acquire + release, kvkit vs redis-py's own ``Lock``.

Both sides do what a request handler does around a critical section: make the lock
object, acquire, release (``with client.lock(name):`` vs ``with raw.lock(key):``).

* kvkit: one Lua script to acquire (``INCR`` of the fencing counter + ``SET PX``), one to
  release (owner and token checked), plus the renewal timer (``auto_renew=True``, the
  default) or nothing (``auto_renew=False``);
* redis-py: ``SET NX PX`` with a random token, and a Lua release that checks the token.
  It has no fencing token and no renewal.
"""

from __future__ import annotations

from typing import Any

from .common import PREFIX, kvkit_async, kvkit_sync, redis_async, redis_sync
from .harness import Case, Env, register

TTL = 30
"""Seconds; both sides hold with this TTL (kvkit ``PX 30000``, redis-py ``timeout=30``)."""

BASE_KEY = f"{PREFIX}:rlock:{{bench}}"
"""redis-py's lock key, as long as kvkit's (``kvbench:lock:{bench}``)."""


def _sync(env: Env, auto_renew: bool) -> Case:
    client = kvkit_sync(env)
    raw = redis_sync(env)

    def kvkit_op() -> Any:
        with client.lock("bench", ttl=TTL, auto_renew=auto_renew):
            pass

    def base_op() -> Any:
        with raw.lock(BASE_KEY, timeout=TTL):
            pass

    def check() -> None:
        if client.locks() or raw.exists(BASE_KEY):
            raise RuntimeError("a lock was left behind")

    def teardown() -> None:
        client.close()
        raw.close()

    return Case(kvkit_op, base_op, teardown, check)


async def _async(env: Env, auto_renew: bool) -> Case:
    client = kvkit_async(env)
    raw = redis_async(env)

    async def kvkit_op() -> Any:
        async with client.lock("bench", ttl=TTL, auto_renew=auto_renew):
            pass

    async def base_op() -> Any:
        async with raw.lock(BASE_KEY, timeout=TTL):
            pass

    async def check() -> None:
        if await client.locks() or await raw.exists(BASE_KEY):
            raise RuntimeError("a lock was left behind")

    async def teardown() -> None:
        await client.aclose()
        await raw.aclose()

    return Case(kvkit_op, base_op, teardown, check)


@register(
    "locks", "lock acquire+release", mode="sync", baseline="redis-py Lock", target=1.0, ops=3000
)
def _sync_renewing(env: Env) -> Case:
    return _sync(env, auto_renew=True)


@register(
    "locks",
    "lock acquire+release, auto_renew=False",
    mode="sync",
    baseline="redis-py Lock",
    ops=3000,
)
def _sync_plain(env: Env) -> Case:
    return _sync(env, auto_renew=False)


@register(
    "locks",
    "lock acquire+release",
    mode="async",
    baseline="redis.asyncio Lock",
    target=1.0,
    ops=3000,
)
async def _async_renewing(env: Env) -> Case:
    return await _async(env, auto_renew=True)


@register(
    "locks",
    "lock acquire+release, auto_renew=False",
    mode="async",
    baseline="redis.asyncio Lock",
    ops=3000,
)
async def _async_plain(env: Env) -> Case:
    return await _async(env, auto_renew=False)
