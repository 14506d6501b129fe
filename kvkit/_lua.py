"""Lua scripts run by the Redis drivers (written once, shared by the sync and async code)."""

from __future__ import annotations

import hashlib

__all__ = ["LuaScript"]


class LuaScript:
    """A Lua script and its SHA1, run with EVALSHA and loaded on demand (NOSCRIPT).

    Args:
        source: The script's Lua source.
    """

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def __repr__(self) -> str:
        return f"<LuaScript {self.sha[:12]}>"
