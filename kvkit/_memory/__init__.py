"""The thread-safe in-process engine that both memory backends (sync and async) drive.

One :class:`MemoryStore` per ``memory://NAME`` (or per client for plain ``memory://``). It is
plain synchronous code guarded by locks, never blocking for long, so the async backend can
call it directly from the event loop.
"""

from __future__ import annotations

from .engine import CacheSpace, MemoryStore, drop_store, get_store

__all__ = ["CacheSpace", "MemoryStore", "drop_store", "get_store"]
