"""The in-process rate-limit space: the memory engine behind ``client.rate_limiter``.

One lock guards the whole space; each step runs the algorithm functions of
:mod:`kvkit._ratelimit_base` -- the arithmetic the Redis scripts do -- under it, so a
memory limiter is exact under threads and gives the same decisions as Redis. The clock
is the wall clock in microseconds (fixed windows align to it, as on Redis).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .._ratelimit_base import (
    LimitSpec,
    RawDecision,
    SlidingLog,
    fixed_window,
    token_bucket,
    token_bucket_expiry,
)

__all__ = ["LimiterSpace"]

# Every this many writes, states that no longer matter are dropped, so keys that are
# never hit again do not pile up (Redis expires them).
_SWEEP_EVERY = 1024


def now_us() -> int:
    """The wall clock in whole microseconds."""
    return time.time_ns() // 1000


class LimiterSpace:
    """Limiter states by full key: ``(algorithm, state, expires µs)``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._states: dict[str, tuple[str, Any, int]] = {}
        self._writes = 0

    def step(self, key: str, spec: LimitSpec, cost: int, consume: bool) -> RawDecision:
        """Decide on a hit of ``cost`` units at the current time; record it if ``consume``."""
        with self.lock:
            now = now_us()
            algorithm = spec.algorithm
            entry = self._states.get(key)
            state = entry[1] if entry is not None and entry[0] == algorithm else None
            if algorithm == "sliding_window":
                log = state if state is not None else SlidingLog()
                raw = log.step(now, cost, spec, consume)
                if consume and raw.allowed:
                    self._store(key, algorithm, log, log.expiry(spec.period_us), now)
                return raw
            if algorithm == "fixed_window":
                new, raw = fixed_window(state, now, cost, spec, consume)
                if new is not None:
                    self._store(key, algorithm, new, new[0] + spec.period_us, now)
                return raw
            new, raw = token_bucket(state, now, cost, spec, consume)
            if new is not None:
                self._store(key, algorithm, new, token_bucket_expiry(new, spec), now)
            return raw

    def reset(self, key: str) -> bool:
        """Forget ``key``; return whether it held a live state."""
        with self.lock:
            entry = self._states.pop(key, None)
            return entry is not None and entry[2] > now_us()

    # -- helpers (caller holds the lock) ----------------------------------------------------
    def _store(self, key: str, algorithm: str, state: Any, expires: int, now: int) -> None:
        self._states[key] = (algorithm, state, expires)
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            dead = [k for k, (_, _, at) in self._states.items() if at <= now]
            for k in dead:
                del self._states[k]

    def __len__(self) -> int:
        with self.lock:
            now = now_us()
            return sum(1 for _, _, at in self._states.values() if at > now)
