"""Lock primitives on the in-process engine (:mod:`kvkit._memory.locks`).

Each method is one call into the engine, which does it under a single mutex hold: that is
the memory backend's atomicity (the Redis driver gets the same from one Lua script).
"""

from __future__ import annotations

from ..._memory.engine import MemoryStore
from ..._memory.locks import LockSpace
from .base import AsyncLockDriver

__all__ = ["AsyncMemoryLockDriver"]


class AsyncMemoryLockDriver(AsyncLockDriver):
    """Lock primitives on the ``"locks"`` space of a :class:`MemoryStore`.

    Sync and async clients on the same ``memory://NAME`` share the space.
    """

    def __init__(self, store: MemoryStore) -> None:
        self._space = store.space("locks", LockSpace)

    async def acquire(self, key: str, fence: str, owner: str, ttl_ms: int) -> tuple[int, int]:
        return self._space.acquire(key, fence, owner, ttl_ms)

    async def release(self, key: str, owner: str, token: int | None) -> bool:
        return self._space.release(key, owner, token)

    async def extend(self, key: str, owner: str, token: int, ttl_ms: int) -> bool:
        return self._space.extend(key, owner, token, ttl_ms)

    async def exists(self, key: str) -> bool:
        return self._space.exists(key)

    async def held(self, prefix: str) -> list[tuple[str, bytes, int]]:
        return [
            (key, value, pttl)
            for key, value, pttl in self._space.held(prefix + "{")
            if key.endswith("}")
        ]
