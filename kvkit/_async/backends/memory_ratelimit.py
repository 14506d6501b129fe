"""Rate-limit primitives on the in-process engine (:mod:`kvkit._memory.ratelimit`).

Each method is one call into the engine, which does the whole step under one lock: the
memory backend's atomicity (the Redis driver gets the same from one Lua script).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._memory.ratelimit import LimiterSpace
from ..._ratelimit_base import LimitSpec, RawDecision
from .base import AsyncLimiterDriver

if TYPE_CHECKING:
    from ..._memory import MemoryStore

__all__ = ["AsyncMemoryLimiterDriver"]


class AsyncMemoryLimiterDriver(AsyncLimiterDriver):
    """Rate limits of one memory store (sync and async clients of ``memory://NAME`` share them)."""

    def __init__(self, store: MemoryStore) -> None:
        self._space = store.space("ratelimit", LimiterSpace)

    async def hit(self, key: str, spec: LimitSpec, cost: int) -> RawDecision:
        return self._space.step(key, spec, cost, consume=True)

    async def peek(self, key: str, spec: LimitSpec) -> RawDecision:
        return self._space.step(key, spec, 1, consume=False)

    async def reset(self, key: str) -> bool:
        return self._space.reset(key)
