"""Session primitives on the in-process engine (:mod:`kvkit._memory.sessions`).

Each method is one call into the engine, which does it under a single lock hold: that is
the memory backend's atomicity (the Redis driver gets the same from one Lua script).
"""

from __future__ import annotations

from ..._memory.engine import MemoryStore
from ..._memory.sessions import SessionSpace
from ..._sessions_base import SessionRecord
from .base import AsyncSessionDriver

__all__ = ["AsyncMemorySessionDriver"]


class AsyncMemorySessionDriver(AsyncSessionDriver):
    """Session primitives on the ``"sessions"`` space of a :class:`MemoryStore`.

    Sync and async clients on the same ``memory://NAME`` share the space.
    """

    def __init__(self, store: MemoryStore) -> None:
        self._space = store.space("sessions", SessionSpace)

    async def create(
        self,
        key: str,
        fields: dict[str, bytes],
        idle_ms: int | None,
        max_age_ms: int | None,
        index: str | None,
        meta: bytes | None = None,
    ) -> None:
        self._space.create(key, fields, idle_ms, max_age_ms, index, meta)

    async def get(self, key: str) -> dict[str, bytes] | None:
        return self._space.get(key)

    async def replace(self, key: str, fields: dict[str, bytes]) -> bool:
        return self._space.replace(key, fields)

    async def update(
        self, key: str, fields: dict[str, bytes], remove: list[str]
    ) -> dict[str, bytes] | None:
        return self._space.update(key, fields, remove)

    async def delete(self, key: str) -> bool:
        return self._space.delete(key)

    async def touch(self, key: str, idle_ms: int | None, change: bool) -> bool:
        return self._space.touch(key, idle_ms, change)

    async def rotate(self, old: str, new: str) -> bool:
        return self._space.rotate(old, new)

    async def pttl(self, key: str) -> int | None:
        return self._space.pttl(key)

    async def exists(self, key: str) -> bool:
        return self._space.exists(key)

    async def members(self, index: str) -> list[str]:
        return self._space.members(index)

    async def delete_members(self, index: str) -> int:
        return self._space.delete_members(index)

    async def details(self, index: str) -> list[SessionRecord]:
        return self._space.details(index)
