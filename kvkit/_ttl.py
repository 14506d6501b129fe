"""TTL arguments and their resolution to whole milliseconds.

A TTL argument is ``None`` (the role's default), a positive number of seconds, a positive
``timedelta``, a preset name (``"default"``, ``"temp"``, ``"long"``) or :data:`FOREVER`.
Everything is resolved to milliseconds because Redis' PX/PEXPIRE honour sub-second TTLs.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any, Final, Literal, Union

from ._errors import InvalidArgument, KVKitError

__all__ = [
    "FOREVER",
    "MAX_SECONDS",
    "TTL",
    "TTLResolver",
    "ceil_ms",
    "check_seconds",
    "remaining_seconds",
    "seconds_to_ms",
]

MAX_SECONDS: Final = 100 * 365 * 86400
"""The longest duration (TTL, delay, lease) kvkit accepts: 100 years, in seconds.

Redis keeps expiry deadlines as signed 64-bit milliseconds and Lua computes with doubles,
so values near those limits overflow or lose precision on one backend and not on another.
A bound far below both keeps every backend exact and identical; use ``FOREVER`` for "never".
"""


class _Forever:
    """Type of :data:`FOREVER`; a singleton so ``ttl is FOREVER`` works."""

    _instance: _Forever | None = None

    def __new__(cls) -> _Forever:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "kvkit.FOREVER"

    def __reduce__(self) -> str:
        return "FOREVER"


FOREVER: Final = _Forever()
"""Pass as a TTL to store a value without expiry."""

TTL = Union[None, int, float, timedelta, Literal["default", "temp", "long"], _Forever]  # noqa: UP007 - a runtime alias must work on Python 3.10


def seconds_to_ms(seconds: Any, what: str = "ttl") -> int:
    """Convert a positive number of seconds (or ``timedelta``) to whole milliseconds.

    Sub-millisecond remainders round up so that a tiny positive TTL never becomes 0
    (which Redis would reject and which would mean "no expiry" elsewhere).

    Raises:
        InvalidArgument: not a positive finite number or ``timedelta``.
    """
    if isinstance(seconds, timedelta):
        value = seconds.total_seconds()
    elif type(seconds) in (int, float) or (
        isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
    ):
        value = float(seconds)
    else:
        raise InvalidArgument(
            f"{what} must be a number of seconds, a timedelta, 'default', 'temp', 'long', "
            f"None or kvkit.FOREVER, not {type(seconds).__name__!r}"
        )
    return ceil_ms(check_seconds(value, what, hint="; use kvkit.FOREVER for no expiry"))


def ceil_ms(seconds: float) -> int:
    """Whole milliseconds, rounded up so that a tiny positive duration never becomes 0."""
    return max(1, math.ceil(seconds * 1000))


def check_seconds(
    seconds: float,
    what: str,
    *,
    error: type[KVKitError] = InvalidArgument,
    zero_ok: bool = False,
    hint: str = "",
) -> float:
    """Return ``seconds`` if it is a finite duration within :data:`MAX_SECONDS`.

    The one "positive seconds" rule of kvkit, shared by settings, URL options and call
    arguments; only the error type differs by layer (``ConfigError`` for configuration,
    ``InvalidArgument`` for a call's arguments).

    Args:
        seconds: The duration, already converted to a number of seconds.
        what: Names the value in the message (``"ttl"``, ``"Settings.cache_ttl"``, ...).
        error: The error class raised.
        zero_ok: Whether 0 is allowed (a delay), besides positive values.
        hint: Appended to the "at most" message.

    Raises:
        KVKitError: ``error``, when ``seconds`` is NaN, infinite, negative, zero (unless
            ``zero_ok``) or above :data:`MAX_SECONDS`.
    """
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero_ok):
        allowed = "zero or positive" if zero_ok else "positive"
        raise error(f"{what} must be {allowed} and finite, got {seconds!r}")
    if seconds > MAX_SECONDS:
        # Beyond it Lua's doubles and Redis' 64-bit milliseconds overflow (a delay of 1e16 s
        # was delivered at once on Redis and never on memory://): reject it on every backend.
        raise error(
            f"{what} must be at most {MAX_SECONDS} seconds (100 years), got {seconds!r}{hint}"
        )
    return seconds


def remaining_seconds(ms: int | None) -> float | None:
    """Turn a PTTL-style answer into seconds: ``None`` if missing, ``math.inf`` if no expiry."""
    if ms is None:
        return None
    return math.inf if ms < 0 else ms / 1000.0


class TTLResolver:
    """Resolves TTL arguments for one role.

    Args:
        default: The role's default TTL in seconds (``None`` for no expiry).
        temp: The ``"temp"`` preset in seconds.
        long: The ``"long"`` preset in seconds.
    """

    __slots__ = ("_default_ms", "_presets")

    def __init__(self, default: float | None, temp: float, long: float) -> None:
        self._default_ms = None if default is None else seconds_to_ms(default, "default ttl")
        self._presets = {
            "default": self._default_ms,
            "temp": seconds_to_ms(temp, "temp ttl"),
            "long": seconds_to_ms(long, "long ttl"),
        }

    @property
    def default_ms(self) -> int | None:
        """The role's default TTL in milliseconds (``None``: no expiry)."""
        return self._default_ms

    def ms(self, ttl: Any) -> int | None:
        """Resolve a TTL argument to milliseconds; ``None`` means no expiry.

        Raises:
            InvalidArgument: the argument is not a valid TTL.
        """
        if ttl is None:
            return self._default_ms
        if type(ttl) is int and 0 < ttl <= MAX_SECONDS:  # the common case, checked cheaply
            return ttl * 1000
        if ttl is FOREVER:
            return None
        if type(ttl) is str:
            try:
                return self._presets[ttl]
            except KeyError:
                raise InvalidArgument(
                    f"unknown ttl preset {ttl!r}; use 'default', 'temp' or 'long'"
                ) from None
        return seconds_to_ms(ttl)
