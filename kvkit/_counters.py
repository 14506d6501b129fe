"""Counters (``cache.incr``): signed 64-bit integers with Redis ``INCRBY`` semantics everywhere.

Redis stores counters as signed 64-bit integers and refuses a result outside that range;
Python integers are unbounded. So that every backend answers the same, ``delta`` is checked
up front, the memory engine applies Redis' own rules (what counts as an integer, the range),
and drivers report a refused increment with :class:`IncrRefused`, which the cache service
turns into an :class:`~kvkit.InvalidArgument` naming the caller's key.
"""

from __future__ import annotations

import re
from typing import Any, Final

from ._errors import InvalidArgument

__all__ = ["INT64_MAX", "INT64_MIN", "IncrRefused", "add_to_stored", "check_delta"]

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

# What Redis' string2ll accepts: no sign but '-', no leading zeros, no spaces, no '_'
# (all of which Python's int() would take).
_INTEGER = re.compile(rb"(?:0|-?[1-9][0-9]*)\Z")


class IncrRefused(InvalidArgument):
    """Raised by a cache driver's ``incr``: the increment cannot be applied.

    Args:
        overflow: ``True`` when the result would leave the signed 64-bit range,
            ``False`` when the stored value is not a signed 64-bit integer.
    """

    def __init__(self, overflow: bool) -> None:
        self.overflow = overflow
        super().__init__(
            "incr would overflow the signed 64-bit range"
            if overflow
            else "the stored value is not a signed 64-bit integer"
        )

    def for_key(self, key: str) -> InvalidArgument:
        """Return the error the caller sees, naming the caller's ``key``."""
        if self.overflow:
            return InvalidArgument(
                f"incr of key {key!r} would overflow: counters are signed 64-bit integers "
                f"({INT64_MIN}..{INT64_MAX})"
            )
        return InvalidArgument(f"value of key {key!r} is not an integer")


def check_delta(delta: Any) -> int:
    """Return ``delta`` if it is an ``int`` in the signed 64-bit range, else raise.

    Raises:
        InvalidArgument: ``delta`` is not an ``int`` (``bool`` included) or out of range.
    """
    if isinstance(delta, bool) or not isinstance(delta, int):
        raise InvalidArgument(f"delta must be an int, not {type(delta).__name__!r}")
    if not INT64_MIN <= delta <= INT64_MAX:
        raise InvalidArgument(
            f"delta must be a signed 64-bit integer ({INT64_MIN}..{INT64_MAX}), got {delta}"
        )
    return delta


def add_to_stored(old: bytes | None, delta: int) -> int:
    """Return ``old + delta`` as Redis ``INCRBY`` computes it (a missing value is 0).

    Raises:
        IncrRefused: ``old`` is not a signed 64-bit integer, or the sum leaves the range.
    """
    current = 0
    if old is not None:
        if not _INTEGER.match(old):
            raise IncrRefused(overflow=False)
        current = int(old)
        if not INT64_MIN <= current <= INT64_MAX:
            raise IncrRefused(overflow=False)
    result = current + delta
    if not INT64_MIN <= result <= INT64_MAX:
        raise IncrRefused(overflow=True)
    return result
