"""``cache.get`` with operation metrics on vs off (``Settings.metrics``), kvkit against itself.

Both sides are kvkit clients on the same server with the same settings except
``metrics``, reading the same key: the ratio is what recording costs (target: at most 5 %).
"""

from __future__ import annotations

from typing import Any

import attrs

from .common import (
    KEY,
    TTL,
    VALUE,
    kvkit_async,
    kvkit_sync,
)
from .harness import Case, Env, register

_TAGS = ("metrics",)


def _off(client: Any) -> Any:
    return type(client)(settings=attrs.evolve(client.settings, metrics=False))


@register(
    "cache",
    "cache.get, metrics on",
    mode="sync",
    baseline="kvkit cache.get, metrics off",
    target=0.95,
    ops=4000,
    tags=_TAGS,
)
def _sync(env: Env) -> Case:
    on = kvkit_sync(env)
    off = _off(on)
    on.cache.set(KEY, VALUE, ttl=TTL)
    get_on, get_off = on.cache.get, off.cache.get
    if get_on(KEY) != VALUE or get_off(KEY) != VALUE:
        raise RuntimeError("the rows do not read the value back")

    def check() -> None:
        if not on.metrics_snapshot()["operations"] or off.metrics_snapshot()["operations"]:
            raise RuntimeError("metrics were not on for one side and off for the other")

    def teardown() -> None:
        on.close()
        off.close()

    return Case(lambda: get_on(KEY), lambda: get_off(KEY), teardown, check)


@register(
    "cache",
    "cache.get, metrics on",
    mode="async",
    baseline="kvkit cache.get, metrics off",
    target=0.95,
    ops=4000,
    tags=_TAGS,
)
async def _async(env: Env) -> Case:
    on = kvkit_async(env)
    off = _off(on)
    await on.cache.set(KEY, VALUE, ttl=TTL)
    get_on, get_off = on.cache.get, off.cache.get
    if await get_on(KEY) != VALUE or await get_off(KEY) != VALUE:
        raise RuntimeError("the rows do not read the value back")

    async def check() -> None:
        if not on.metrics_snapshot()["operations"] or off.metrics_snapshot()["operations"]:
            raise RuntimeError("metrics were not on for one side and off for the other")

    async def teardown() -> None:
        await on.aclose()
        await off.aclose()

    async def kvkit_get() -> Any:
        return await get_on(KEY)

    async def base_get() -> Any:
        return await get_off(KEY)

    return Case(kvkit_get, base_get, teardown, check)
