"""Lock primitives on Redis (also fakeredis, Sentinel and Cluster): one Lua script each.

The scripts live in ``kvkit/_resources/lua/lock/``. Expiry runs on the server's clock
(``PX``/``PEXPIRE``), so holders on machines with skewed clocks agree on it. The lock and
its fencing counter share a hash slot (see :mod:`kvkit._lock_base`), so every script
works on Cluster unchanged; only the listing differs there (it scans every primary).
"""

from __future__ import annotations

from typing import Any

from ..._keys import glob_escape
from ..._lock_base import parse_acquire
from ..._lua import LuaScript
from .base import AsyncLockDriver
from .redis_runner import AsyncRedisRunner

__all__ = ["AsyncClusterLockDriver", "AsyncRedisLockDriver"]

_ACQUIRE = LuaScript.load("lock/acquire")
_RELEASE = LuaScript.load("lock/release")
_EXTEND = LuaScript.load("lock/extend")
# Keys per pipeline while listing: one round trip reads the value and TTL of this many.
_LIST_BATCH = 500


class AsyncRedisLockDriver(AsyncLockDriver):
    """Lock primitives as Lua scripts over a Redis backend's retry policy."""

    def __init__(self, backend: AsyncRedisRunner) -> None:
        self._b = backend

    async def acquire(self, key: str, fence: str, owner: str, ttl_ms: int) -> tuple[int, int]:
        # Retried: a repeated call of the same acquisition returns the same token (the
        # script recognises its owner id), so a lost reply never takes a second token.
        reply = await self._b.eval(_ACQUIRE, [key, fence], [owner, ttl_ms], idempotent=True)
        return parse_acquire(reply)

    async def release(self, key: str, owner: str, token: int | None) -> bool:
        # Not retried when a token is given: after a lost reply, a retry would find the lock
        # gone (deleted by the first try) and report it as not owned. Without a token it
        # undoes a lost acquire, which is the same whether it ran once or twice.
        args = [owner, "" if token is None else token]
        return bool(await self._b.eval(_RELEASE, [key], args, idempotent=token is None))

    async def extend(self, key: str, owner: str, token: int, ttl_ms: int) -> bool:
        args = [owner, token, ttl_ms]
        return bool(await self._b.eval(_EXTEND, [key], args, idempotent=True))

    async def exists(self, key: str) -> bool:
        return bool(await self._b.command("EXISTS", key, idempotent=True))

    async def held(self, prefix: str) -> list[tuple[str, bytes, int]]:
        pattern = glob_escape(prefix) + "{*}"

        async def scan(r: Any) -> list[tuple[str, bytes, int]]:
            keys = [k async for k in r.scan_iter(match=pattern, count=1000, **self._scan_args(r))]
            out: list[tuple[str, bytes, int]] = []
            for start in range(0, len(keys), _LIST_BATCH):
                batch = keys[start : start + _LIST_BATCH]
                pipe = r.pipeline(transaction=False)
                for key in batch:
                    pipe.get(key)
                    pipe.pttl(key)
                # Per-key errors stay in place: a key of another type under the lock
                # pattern (written by someone else) is listed as unreadable, not fatal.
                replies = await pipe.execute(raise_on_error=False)
                for i, key in enumerate(batch):
                    value, pttl = replies[2 * i], replies[2 * i + 1]
                    if value is None or pttl == -2:  # expired between SCAN and GET
                        continue
                    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
                    raw = value if isinstance(value, bytes) else b""
                    out.append((text, raw, pttl if isinstance(pttl, int) else -1))
            return out

        result: list[tuple[str, bytes, int]] = await self._b.run(scan, idempotent=True)
        return result

    def _scan_args(self, r: Any) -> dict[str, Any]:
        """Extra ``scan_iter`` arguments (none on a single server)."""
        return {}


class AsyncClusterLockDriver(AsyncRedisLockDriver):
    """Locks on Cluster: the scripts run as they are; the listing scans every primary."""

    def _scan_args(self, r: Any) -> dict[str, Any]:
        # Each primary holds its own slots (replicas hold the same keys again).
        return {"target_nodes": r.PRIMARIES}
