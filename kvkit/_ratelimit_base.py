"""Rate limits without I/O: rates, decisions, validation and the algorithms' arithmetic.

Written once for every backend. The memory engine runs the functions below under its
lock; the Redis driver runs the same arithmetic in Lua (``kvkit/_resources/lua/ratelimit``),
step for step, on the server's clock. Both work in whole microseconds (and, for the token
bucket, whole "ticks"), with integers only, so that a decision never depends on float
rounding and both backends reach identical answers from identical inputs.

Algorithms
----------
``fixed_window``
    Windows of ``period`` aligned to multiples of the period since the Unix epoch (a
    ``"5/minute"`` window restarts at every full minute). A window admits ``limit``
    units; the count starts again at 0 in the next window.

``sliding_window`` (exact)
    A hit at time ``t`` of ``cost`` units is admitted when the units admitted in
    ``(t - period, t]`` plus ``cost`` are at most ``limit``. Hence no interval of length
    ``period`` (half-open, either side) ever holds more than ``limit`` admitted units:
    take the last admission in such an interval, its own check covered all the others.
    This needs the log of the admissions still inside the window, one entry per admitted
    *hit* (not per unit), each holding its time and cost; entries that left the window are
    dropped on the next hit, so a key never holds more than ``limit`` entries whatever the
    traffic, and a denied hit stores nothing. Fewer entries cannot be exact in general:
    admissions spread over the window each free their units at a different moment, and an
    exact answer has to know every one of those moments. On Redis the log is a list,
    newest first; each entry also carries the running total of units admitted before it,
    so the units in the window are one subtraction (newest total minus oldest) instead of
    a sum over the log, and a hit touches only the two ends of the list: O(1), plus the
    entries it drops, each dropped once.

``token_bucket`` (GCRA)
    ``limit`` units per ``period`` sustained, with ``limit + burst`` available at once
    after a quiet spell. Stored as a "debt" (how far the bucket is below full) and the
    tick at which it was computed: a hit of ``cost`` units is admitted when the debt
    plus ``cost`` emission intervals stays within the capacity. To keep integers exact
    the debt is counted in ``tick / limit`` units, so one unit costs ``period_ticks``
    and one tick of time repays ``limit``.

A denied hit consumes nothing, under every algorithm. Each step clamps the clock to the
newest time the key has seen, so a clock stepping back on the server never frees units
early.
"""

from __future__ import annotations

import math
import re
from collections import deque
from typing import Any, Final, NamedTuple

import attrs

from ._errors import InvalidArgument
from ._keys import validate_key
from ._queue_base import as_seconds
from ._ttl import check_seconds

__all__ = [
    "ALGORITHMS",
    "LimitSpec",
    "Rate",
    "RateLimitDecision",
    "RawDecision",
    "SlidingLog",
    "fixed_window",
    "limiter_key",
    "limiter_parts",
    "make_spec",
    "response_headers",
    "token_bucket",
    "token_bucket_expiry",
    "validate_cost",
    "validate_limiter_name",
]

ALGORITHMS: Final = ("fixed_window", "sliding_window", "token_bucket")
"""The algorithm names ``rate_limiter(algorithm=...)`` accepts."""

MAX_LIMIT: Final = 10**9
"""The largest ``limit`` (and ``burst``) accepted: far beyond any real per-key limit, and
small enough that every count stays an exact integer in Lua's doubles."""

_MIN_PERIOD_US: Final = 1000  # Redis expires keys in whole milliseconds
_EXACT: Final = 2**52  # below it, doubles (Lua's numbers) hold integers exactly
_UNITS: Final = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE_RE: Final = re.compile(
    r"^\s*(?P<n>\d+)\s*/\s*(?:(?P<unit>second|minute|hour|day)|(?P<k>\d+(?:\.\d+)?)\s*s)\s*$",
    re.IGNORECASE,
)


def _period_seconds(value: Any) -> float:
    seconds = check_seconds(as_seconds(value, "rate period"), "rate period")
    if round(seconds * 1_000_000) < _MIN_PERIOD_US:
        raise InvalidArgument(f"rate period must be at least 1 ms, got {seconds!r} s")
    return seconds


def _check_limit(value: Any, what: str = "rate limit") -> int:
    if type(value) is not int and not (isinstance(value, int) and not isinstance(value, bool)):
        raise InvalidArgument(f"{what} must be an int, not {type(value).__name__!r}")
    if not 1 <= value <= MAX_LIMIT:
        raise InvalidArgument(f"{what} must be between 1 and {MAX_LIMIT}, got {value!r}")
    return int(value)


@attrs.frozen
class Rate:
    """``limit`` units per ``period`` seconds: ``Rate(5, 60)``, ``Rate(5, timedelta(minutes=1))``.

    Args:
        limit: Units admitted per period (an ``int`` of at least 1).
        period: The period: seconds (``int``/``float``, at least 1 ms) or a ``timedelta``.

    Raises:
        InvalidArgument: the limit or the period is invalid.
    """

    limit: int = attrs.field(converter=_check_limit)
    period: float = attrs.field(converter=_period_seconds)

    @classmethod
    def parse(cls, text: str | Rate) -> Rate:
        """Parse ``"N/second"``, ``"N/minute"``, ``"N/hour"``, ``"N/day"`` or ``"N/Ks"``.

        ``"N/Ks"`` is N per K seconds (K may have decimals: ``"50/2s"``, ``"10/0.5s"``).
        A :class:`Rate` is returned as it is.

        Raises:
            InvalidArgument: the text is not one of these forms, or N or K is not positive.
        """
        if isinstance(text, Rate):
            return text
        if not isinstance(text, str):
            raise InvalidArgument(
                "rate must be a str such as '5/minute' or a kvkit.Rate, "
                f"not {type(text).__name__!r}"
            )
        match = _RATE_RE.match(text)
        if match is None:
            raise InvalidArgument(
                f"invalid rate {text!r}: use 'N/second', 'N/minute', 'N/hour', 'N/day' or "
                "'N/Ks' (N per K seconds, e.g. '50/2s')"
            )
        unit = match["unit"]
        period = float(_UNITS[unit.lower()]) if unit else float(match["k"])
        return cls(int(match["n"]), period)

    def __str__(self) -> str:
        for unit, seconds in _UNITS.items():
            if self.period == seconds:
                return f"{self.limit}/{unit}"
        return f"{self.limit}/{self.period:g}s"


@attrs.frozen
class RateLimitDecision:
    """The answer of a rate limiter to one ``hit`` (or ``peek``).

    Attributes:
        allowed: Whether the hit is admitted (for ``peek``: whether a hit of cost 1 would be).
        limit: Units available at once: the rate's limit (plus ``burst`` for the token bucket).
        remaining: Units still available now, after this hit when it was admitted.
        reset_after: Seconds until the full ``limit`` is available again (0.0: it is).
        retry_after: Seconds until this hit would be admitted; ``None`` when it was.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float | None = None


class RawDecision(NamedTuple):
    """A decision as a driver returns it: integers, microseconds, ``retry_us`` -1 for none."""

    allowed: bool
    remaining: int
    reset_us: int
    retry_us: int

    def decision(self, limit: int) -> RateLimitDecision:
        """The public :class:`RateLimitDecision` of a limiter whose capacity is ``limit``."""
        return RateLimitDecision(
            allowed=self.allowed,
            limit=limit,
            remaining=max(0, self.remaining),
            reset_after=max(0, self.reset_us) / 1_000_000,
            retry_after=None if self.allowed else max(1, self.retry_us) / 1_000_000,
        )


@attrs.frozen
class LimitSpec:
    """A limiter's parameters in the integer units the algorithms compute in.

    Attributes:
        algorithm: One of :data:`ALGORITHMS`.
        limit: Units per period (the rate's limit).
        capacity: Units available at once: ``limit``, plus ``burst`` for the token bucket.
        period_us: The period in microseconds.
        tick_us: The token bucket's unit of time (1 µs, or coarser when ``capacity *
            period`` would not stay exact below 2**52).
        period_ticks: The period in ticks (rounded up: never faster than the rate).
    """

    algorithm: str
    limit: int
    capacity: int
    period_us: int
    tick_us: int
    period_ticks: int

    @property
    def script_args(self) -> tuple[int, ...]:
        """The first script arguments: capacity, period, limit, tick, period in ticks."""
        return (self.capacity, self.period_us, self.limit, self.tick_us, self.period_ticks)


def make_spec(rate: Rate, algorithm: Any, burst: Any) -> LimitSpec:
    """Validate a limiter's algorithm and burst against its rate; return its :class:`LimitSpec`.

    Raises:
        InvalidArgument: unknown algorithm; ``burst`` not a non-negative ``int``, or given
            (non-zero) for an algorithm other than ``token_bucket``.
    """
    if algorithm not in ALGORITHMS:
        raise InvalidArgument(
            f"unknown algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}"
        )
    extra = 0
    if burst is not None:
        if isinstance(burst, bool) or not isinstance(burst, int):
            raise InvalidArgument(f"burst must be an int, not {type(burst).__name__!r}")
        if not 0 <= burst <= MAX_LIMIT:
            raise InvalidArgument(f"burst must be between 0 and {MAX_LIMIT}, got {burst!r}")
        if burst and algorithm != "token_bucket":
            raise InvalidArgument(
                f"burst applies to the token_bucket algorithm only, not {algorithm}"
            )
        extra = int(burst)
    period_us = round(rate.period * 1_000_000)
    capacity = rate.limit + extra
    tick = 1
    while capacity * -(-period_us // tick) > _EXACT:
        tick *= 10
    return LimitSpec(
        algorithm=algorithm,
        limit=rate.limit,
        capacity=capacity,
        period_us=period_us,
        tick_us=tick,
        period_ticks=-(-period_us // tick),
    )


def validate_cost(cost: Any, spec: LimitSpec) -> int:
    """Return ``cost`` if a hit may consume it under ``spec``.

    Raises:
        InvalidArgument: not an ``int``, below 1, or above the limiter's capacity (such a
            hit could never be admitted).
    """
    if type(cost) is int and 1 <= cost <= spec.capacity:
        return cost
    if isinstance(cost, bool) or not isinstance(cost, int):
        raise InvalidArgument(f"cost must be an int, not {type(cost).__name__!r}")
    if cost < 1:
        raise InvalidArgument(f"cost must be at least 1, got {cost!r}")
    raise InvalidArgument(
        f"cost {cost} exceeds what the limiter ever admits at once ({spec.capacity}); "
        "such a hit could never be allowed"
    )


def validate_limiter_name(name: Any) -> str:
    """Return ``name`` if it can name a limiter (a key without ``:``, ``{`` or ``}``).

    ``:`` separates the name from the key in the stored key (``name="a:b"`` with key ``c``
    would collide with ``name="a"``, key ``b:c``); braces would turn it into a Cluster hash
    tag that piles every key of the limiter into one slot.

    Raises:
        InvalidArgument: not a valid key, or it contains one of those characters.
    """
    checked = validate_key(name, "limiter name")
    for char in ":{}":
        if char in checked:
            raise InvalidArgument(f"limiter name must not contain {char!r}, got {checked!r}")
    return checked


def limiter_parts(name: Any, rate: Any, algorithm: Any, burst: Any) -> tuple[str, Rate, LimitSpec]:
    """Validate a limiter's definition; return its name, rate and :class:`LimitSpec`.

    Raises:
        InvalidArgument: any of them is invalid.
    """
    checked = validate_limiter_name(name)
    parsed = Rate.parse(rate)
    return checked, parsed, make_spec(parsed, algorithm, burst)


def response_headers(decision: RateLimitDecision) -> dict[str, str]:
    """The HTTP headers of a rate-limited response (integer seconds, rounded up).

    ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds until the
    full limit is back) on every response; ``Retry-After`` on a denied one.
    """
    headers = {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(math.ceil(decision.reset_after)),
    }
    if decision.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after)))
    return headers


def limiter_key(prefix: str, name: str) -> str:
    """The stored-key prefix of the limiter ``name``: ``{prefix}:limit:{name}:``."""
    return f"{prefix}:limit:{name}:"


# -- the algorithms (memory engine; the Lua scripts mirror them line by line) -------------------
def fixed_window(
    state: tuple[int, int] | None, now: int, cost: int, spec: LimitSpec, consume: bool
) -> tuple[tuple[int, int] | None, RawDecision]:
    """One fixed-window step. ``state`` is ``(window start µs, units used)``.

    Returns:
        The state to store (``None``: unchanged) and the decision.
    """
    period, cap = spec.period_us, spec.capacity
    if state is not None and state[0] > now:
        now = state[0]  # the clock stepped back: stay in the newest window seen
    start = now - now % period
    used = state[1] if state is not None and state[0] == start else 0
    end = start + period
    if used + cost > cap:
        return None, RawDecision(False, cap - used, end - now, end - now)
    new: tuple[int, int] | None = None
    if consume:
        used += cost
        new = (start, used)
    return new, RawDecision(True, cap - used, end - now if used else 0, -1)


def token_bucket(
    state: tuple[int, int] | None, now_us: int, cost: int, spec: LimitSpec, consume: bool
) -> tuple[tuple[int, int] | None, RawDecision]:
    """One GCRA step. ``state`` is ``(tick of the last change, debt)``; see the module docstring.

    Returns:
        The state to store (``None``: unchanged) and the decision.
    """
    tick, per_unit, rate, cap = spec.tick_us, spec.period_ticks, spec.limit, spec.capacity
    now = now_us // tick
    debt = 0
    if state is not None:
        stamp, stored = state
        now = max(now, stamp)
        debt = max(0, stored - (now - stamp) * rate)
    full = cap * per_unit
    after = debt + cost * per_unit
    if after > full:
        retry = -(-(after - full) // rate) * tick
        return None, RawDecision(False, (full - debt) // per_unit, -(-debt // rate) * tick, retry)
    new: tuple[int, int] | None = None
    if consume:
        debt = after
        new = (now, debt)
    return new, RawDecision(True, (full - debt) // per_unit, -(-debt // rate) * tick, -1)


def token_bucket_expiry(state: tuple[int, int], spec: LimitSpec) -> int:
    """When a token-bucket state is worth nothing (the bucket is full again), in µs."""
    stamp, debt = state
    return (stamp + -(-debt // spec.limit)) * spec.tick_us


class SlidingLog:
    """The sliding window's log of admissions: ``(time µs, cost)`` oldest first, and their sum."""

    __slots__ = ("entries", "total")

    def __init__(self) -> None:
        self.entries: deque[tuple[int, int]] = deque()
        self.total = 0

    def step(self, now: int, cost: int, spec: LimitSpec, consume: bool) -> RawDecision:
        """Drop what left the window, then decide (and record the hit when admitted)."""
        period, cap, entries = spec.period_us, spec.capacity, self.entries
        if entries and entries[-1][0] > now:
            now = entries[-1][0]  # the clock stepped back: never free units early
        cutoff = now - period  # entries after the cutoff are inside the window
        while entries and entries[0][0] <= cutoff:
            self.total -= entries.popleft()[1]
        used = self.total
        if used + cost <= cap:
            if consume:
                entries.append((now, cost))
                self.total = used = used + cost
            reset = entries[-1][0] + period - now if used else 0
            return RawDecision(True, cap - used, reset, -1)
        need, freed, retry = used + cost - cap, 0, -1
        for at, units in entries:
            freed += units
            if freed >= need:
                retry = at + period - now
                break
        return RawDecision(False, cap - used, entries[-1][0] + period - now, retry)

    def expiry(self, period_us: int) -> int:
        """When every entry has left the window (µs); 0 for an empty log."""
        return self.entries[-1][0] + period_us if self.entries else 0
