"""Rate-limit primitives on Redis: one Lua script per step, one round trip per hit.

Storage (see the scripts in ``kvkit/_resources/lua/ratelimit/`` and the algorithms in
:mod:`kvkit._ratelimit_base`): one key per limiter key, ``{prefix}:limit:{name}:{key}``,

* ``fixed_window``: a hash ``{w: window start (µs), c: units used}``;
* ``sliding_window``: a list, one element per admitted hit still inside the window (at
  most ``limit`` elements), newest first: ``"<time µs>:<units admitted before>:<cost>:"``
  followed by the time and "before" of the oldest entry inside when it was pushed and
  the key's expiry (ms);
* ``token_bucket``: a hash ``{s: tick of the last change, d: debt}``;

each expiring when it no longer matters (end of the window, bucket full again; the
sliding log up to a period after its last entry left the window, so that most hits need
not move its expiry). Because a limiter key is a single Redis key, each script
touches one key and therefore one Cluster slot: the same scripts run unchanged on
Cluster, and different keys of one limiter spread over the cluster (no hash tag piles
them into one slot). Times come from the server's ``TIME``, so every client, thread and
process agrees on the windows whatever its own clock says.

A hit is never retried after an unknown outcome: a retry after a lost reply could count
the hit twice. A peek and a reset are safe to repeat and are retried like reads.
"""

from __future__ import annotations

from ..._lua import LuaScript
from ..._ratelimit_base import LimitSpec, RawDecision
from .base import AsyncLimiterDriver
from .redis_runner import AsyncRedisRunner

__all__ = ["AsyncRedisLimiterDriver"]

_SCRIPTS = {
    "fixed_window": LuaScript.load("ratelimit/fixed_window"),
    "sliding_window": LuaScript.load("ratelimit/sliding_window"),
    "token_bucket": LuaScript.load("ratelimit/token_bucket"),
}


def _raw(reply: list[int]) -> RawDecision:
    allowed, remaining, reset_us, retry_us = reply
    return RawDecision(bool(allowed), int(remaining), int(reset_us), int(retry_us))


class AsyncRedisLimiterDriver(AsyncLimiterDriver):
    """Rate-limit steps as EVALSHA of the algorithm's script (NOSCRIPT: load and rerun)."""

    def __init__(self, backend: AsyncRedisRunner) -> None:
        self._b = backend

    async def hit(self, key: str, spec: LimitSpec, cost: int) -> RawDecision:
        args = [*spec.script_args, cost, 1]
        reply = await self._b.eval(_SCRIPTS[spec.algorithm], [key], args, idempotent=False)
        return _raw(reply)

    async def peek(self, key: str, spec: LimitSpec) -> RawDecision:
        args = [*spec.script_args, 1, 0]
        reply = await self._b.eval(_SCRIPTS[spec.algorithm], [key], args, idempotent=True)
        return _raw(reply)

    async def reset(self, key: str) -> bool:
        return bool(await self._b.command("DEL", key, idempotent=True))
