"""The rate-limit service: validation, key layout, decisions and failing open.

``client.rate_limiter(name, rate, ...)`` returns an :class:`AsyncRateLimiterService`
(an :class:`kvkit.AsyncRateLimiter`). Rates, the algorithms and their arithmetic live in
:mod:`kvkit._ratelimit_base` (no I/O); the driver of the cache role's backend does each
step atomically in one round trip. Every argument is checked before anything is sent.
"""

from __future__ import annotations

import logging

from .._errors import BackendError
from .._keys import validate_key
from .._metrics import FAILED_OPEN, Meter
from .._ratelimit_base import (
    LimitSpec,
    Rate,
    RateLimitDecision,
    RawDecision,
    limiter_key,
    validate_cost,
)
from .backends.base import AsyncLimiterDriver
from .metered import metered

__all__ = ["AsyncRateLimiterService"]

log = logging.getLogger("kvkit.ratelimit")


@metered("limiter", "hit", "peek", "reset")
class AsyncRateLimiterService:
    """A named rate limit on the cache role's backend. Implements :class:`kvkit.AsyncRateLimiter`.

    Obtain it from ``client.rate_limiter(name, rate, ...)``; do not construct it directly.
    Each key (a user id, an IP address, ...) has its own allowance; the state lives under
    ``{prefix}:limit:{name}:{key}``.
    """

    _meter: Meter | None = None  # set by the client's metrics recorder

    def __init__(
        self,
        driver: AsyncLimiterDriver,
        *,
        name: str,
        rate: Rate,
        spec: LimitSpec,
        prefix: str,
        fail_open: bool,
        where: str,
    ) -> None:
        self._driver = driver
        self._name = name
        self._rate = rate
        self._spec = spec
        self._prefix = limiter_key(prefix, name)
        self._fail_open = bool(fail_open)
        self._where = where

    def __repr__(self) -> str:
        return (
            f"<kvkit rate limiter {self._name!r} {self._rate} {self._spec.algorithm} "
            f"on {self._where}>"
        )

    @property
    def name(self) -> str:
        """The limiter's name."""
        return self._name

    @property
    def rate(self) -> Rate:
        """The limiter's rate."""
        return self._rate

    @property
    def algorithm(self) -> str:
        """``"fixed_window"``, ``"sliding_window"`` or ``"token_bucket"``."""
        return self._spec.algorithm

    @property
    def limit(self) -> int:
        """Units available at once: the rate's limit, plus ``burst`` for the token bucket."""
        return self._spec.capacity

    def _key(self, key: str) -> str:
        return self._prefix + validate_key(key, "rate limit key")

    def _failed(self, exc: BackendError, op: str, key: str) -> RateLimitDecision:
        """Re-raise ``exc``, or (``fail_open``) log it and allow: the backend is down."""
        if not self._fail_open:
            raise exc
        if self._meter is not None:
            FAILED_OPEN.set(exc)  # the operation returns, yet it failed
        # Keys are often personal data (user ids, IP addresses): the log names the limiter
        # only, and a key echoed in a server's message is blanked out.
        reason = str(exc).replace(key, "<key>")
        log.warning(
            "rate limiter %r failed open (%s allowed) on %s: %s: %s",
            self._name,
            op,
            self._where,
            type(exc).__name__,
            reason,
        )
        return RateLimitDecision(
            allowed=True, limit=self._spec.capacity, remaining=self._spec.capacity, reset_after=0.0
        )

    async def hit(self, key: str, cost: int = 1) -> RateLimitDecision:
        """Consume ``cost`` units of ``key``'s allowance if it has them (atomic, one round trip).

        A denied hit consumes nothing.

        Args:
            key: Whose allowance (a non-empty ``str`` of at most 1024 UTF-8 bytes).
            cost: Units this hit takes (at least 1, at most :attr:`limit`).

        Returns:
            The decision: ``allowed``, ``remaining``, ``reset_after``, ``retry_after``.

        Raises:
            InvalidArgument: bad key or cost (nothing is sent).
            BackendError: the backend failed (unless the limiter fails open: then the hit
                is allowed and a warning is logged).
        """
        full = self._key(key)
        units = validate_cost(cost, self._spec)
        try:
            raw: RawDecision = await self._driver.hit(full, self._spec, units)
        except BackendError as exc:
            return self._failed(exc, "hit", key)
        return raw.decision(self._spec.capacity)

    async def peek(self, key: str) -> RateLimitDecision:
        """Return what a hit of cost 1 would get now, without consuming anything.

        Raises:
            InvalidArgument: bad key (nothing is sent).
            BackendError: the backend failed (unless the limiter fails open).
        """
        full = self._key(key)
        try:
            raw: RawDecision = await self._driver.peek(full, self._spec)
        except BackendError as exc:
            return self._failed(exc, "peek", key)
        return raw.decision(self._spec.capacity)

    async def reset(self, key: str) -> None:
        """Forget ``key``'s hits: its full allowance is available at once.

        Raises:
            InvalidArgument: bad key (nothing is sent).
            BackendError: the backend failed (also when the limiter fails open: a reset
                that did not happen must not look as if it had).
        """
        await self._driver.reset(self._key(key))
