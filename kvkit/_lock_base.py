"""Distributed locks without I/O: argument checks, key layout, stored values, replies.

Written once for the sync and async lock services (``kvkit/_async/locks.py`` and its
generated twin) and for the drivers, which share the stored value format with the Lua
scripts in ``kvkit/_resources/lua/lock/``.

Key layout (``P`` is ``{Settings.prefix}:lock:``, ``NAME`` the lock's name):

* ``P{NAME}`` -- the lock: a string ``"<token>:<owner>"`` with the lock's TTL (PX);
* ``P{NAME}:fence`` -- the fencing counter (``INCR``), without expiry.

``{NAME}`` is a Cluster hash tag, so both keys live in one slot and one script can touch
both. Lock names may not contain braces, which keeps the tag exactly the name. The cache's
single-flight locks live under ``P`` too (``P<cache key>``), but their keys never start
with ``{`` (settings prefixes cannot contain braces), so the two never meet.

Why the counter never expires: a fencing token is only useful if a later holder always
gets a larger one than every earlier holder, including one that is paused, lost its lock
to expiry and is about to write with its old token. A counter that expired with the lock
would start again at 1 and hand the next holder a *smaller* token than that paused one.
The price is one small key per lock name ever used.
"""

from __future__ import annotations

import math
import os
import secrets
import socket
from typing import Any, Final

import attrs

from ._backoff import backoff_delay
from ._errors import InvalidArgument
from ._keys import validate_key
from ._queue_base import as_seconds
from ._ttl import ceil_ms, check_seconds

__all__ = [
    "FENCE_SUFFIX",
    "LockInfo",
    "check_flag",
    "fence_key",
    "holder_info",
    "lock_key",
    "lock_ms",
    "lock_prefix",
    "lock_seconds",
    "lock_value",
    "name_from_key",
    "new_owner",
    "parse_acquire",
    "poll_delay",
    "renew_interval",
    "validate_lock_name",
]

FENCE_SUFFIX: Final = ":fence"
"""Appended to a lock's key for its fencing counter (after the tag: the same slot)."""

POLL_FIRST: Final = 0.002
"""Seconds before the first retry of a contended lock (doubling, with jitter)."""

POLL_CAP: Final = 0.1
"""Longest pause between two tries: a freed lock is taken within about this long."""


@attrs.frozen
class LockInfo:
    """A lock held right now, as listed by ``client.locks()`` and ``kvkit locks list``.

    Attributes:
        name: The lock's name (as given to ``client.lock(name)``).
        owner: The holder's id, ``host:pid:random`` (``""`` if the stored value is not
            one kvkit wrote).
        token: The holder's fencing token, or ``None`` if the stored value is unreadable.
        ttl: Seconds until the lock expires unless renewed; ``math.inf`` without expiry.
    """

    name: str
    owner: str
    token: int | None
    ttl: float

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (``ttl`` is ``None`` when infinite)."""
        ttl = None if math.isinf(self.ttl) else self.ttl
        return {"name": self.name, "owner": self.owner, "token": self.token, "ttl": ttl}


# -- arguments ------------------------------------------------------------------------------
def validate_lock_name(name: Any) -> str:
    """Return ``name`` if it can name a lock.

    Raises:
        InvalidArgument: not a valid key (non-empty ``str`` of at most 1024 UTF-8 bytes),
            or it contains ``{`` or ``}`` (the name is the keys' hash tag).
    """
    checked = validate_key(name, "lock name")
    if "{" in checked or "}" in checked:
        raise InvalidArgument(
            f"lock name must not contain '{{' or '}}' (it is a hash tag), got {checked!r}"
        )
    return checked


def lock_seconds(value: Any, what: str, *, zero_ok: bool = False) -> float:
    """Return a duration argument (number of seconds or ``timedelta``) in seconds.

    Raises:
        InvalidArgument: not a number or ``timedelta`` (``bool`` is refused), NaN,
            infinite, negative, zero (unless ``zero_ok``) or above 100 years.
    """
    return check_seconds(as_seconds(value, what), what, zero_ok=zero_ok)


def lock_ms(value: Any, what: str) -> int:
    """A positive duration argument in whole milliseconds (see :func:`lock_seconds`)."""
    return ceil_ms(lock_seconds(value, what))


def check_flag(value: Any, what: str) -> bool:
    """Return ``value`` if it is a ``bool``.

    Raises:
        InvalidArgument: anything else (a truthy string is not a yes).
    """
    if not isinstance(value, bool):
        raise InvalidArgument(f"{what} must be a bool, not {type(value).__name__!r}")
    return value


# -- keys and values ------------------------------------------------------------------------
def lock_prefix(settings_prefix: str) -> str:
    """The key prefix of a client's locks: ``{Settings.prefix}:lock:``."""
    return f"{settings_prefix}:lock:"


def lock_key(prefix: str, name: str) -> str:
    """The lock's key: ``{prefix}{name}`` with the name as hash tag (``kvkit:lock:{name}``)."""
    return f"{prefix}{{{name}}}"


def fence_key(key: str) -> str:
    """The key of the fencing counter of the lock ``key`` (same hash slot)."""
    return key + FENCE_SUFFIX


def name_from_key(prefix: str, key: str) -> str | None:
    """The lock name in a key found under ``prefix``, or ``None`` if it is no lock key."""
    if not (key.startswith(prefix + "{") and key.endswith("}")):
        return None
    name = key[len(prefix) + 1 : -1]
    return name if name and "{" not in name and "}" not in name else None


_HOST = socket.gethostname().replace(":", "-") or "host"
_process = f"{_HOST}:{os.getpid()}"


def _forked() -> None:
    global _process
    _process = f"{_HOST}:{os.getpid()}"


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_forked)


def new_owner() -> str:
    """A fresh owner id, ``host:pid:random``, for one acquisition.

    A new one per acquisition, never reused: it identifies one hold even without its token,
    which is what lets an acquire whose reply was lost be undone (and be retried safely).
    The pid part follows forks (a child names itself, not its parent).
    """
    return f"{_process}:{secrets.token_hex(8)}"


def lock_value(token: int, owner: str) -> bytes:
    """The stored value of a held lock (the Lua scripts write the same: ``token:owner``)."""
    return f"{token}:{owner}".encode()


def holder_info(name: str, raw: bytes | None, pttl_ms: int) -> LockInfo:
    """Describe the holder of ``name`` from its stored value and remaining TTL in ms.

    A value that kvkit did not write (stored data is input) gives ``token=None`` and the
    readable part as owner, never an error.
    """
    text = (raw or b"").decode("utf-8", "replace")
    token_text, sep, owner = text.partition(":")
    token = int(token_text) if sep and token_text.isdigit() else None
    if token is None:
        owner = ""
    ttl = math.inf if pttl_ms < 0 else pttl_ms / 1000.0
    return LockInfo(name=name, owner=owner, token=token, ttl=ttl)


# -- replies and timing ----------------------------------------------------------------------
def parse_acquire(reply: Any) -> tuple[int, int]:
    """``(token, 0)`` when the acquire script took the lock, else ``(0, holder's pttl ms)``.

    The holder's PTTL is ``-1`` for a lock key without expiry (written by someone else).
    """
    token, pttl = int(reply[0]), int(reply[1])
    return token, pttl


def poll_delay(attempt: int, remaining: float | None, holder_pttl_ms: int) -> float:
    """Seconds to wait before trying a contended lock again.

    Jittered exponential backoff from :data:`POLL_FIRST` to :data:`POLL_CAP` (waiters spread
    out instead of hammering the server in step), never past the caller's deadline, and no
    longer than the holder's remaining TTL: a lock that is about to expire is tried right
    when it does.
    """
    delay = backoff_delay(attempt, base=POLL_FIRST, cap=POLL_CAP)
    if holder_pttl_ms > 0:
        delay = min(delay, holder_pttl_ms / 1000.0)
    if remaining is not None:
        delay = min(delay, remaining)
    return max(0.0, delay)


def renew_interval(ttl_ms: int) -> float:
    """Seconds between two automatic renewals: a third of the TTL.

    Two renewals can fail (or be late) before the lock expires.
    """
    return ttl_ms / 3000.0
