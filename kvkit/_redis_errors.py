"""Translation of redis-py exceptions into kvkit's hierarchy (SPEC §8), written once.

redis.asyncio raises the same exception classes as sync redis-py, so both generated drivers
share this module. The original exception is always chained as ``__cause__``; messages
carry the redacted URL only (redis-py messages never contain the password).
"""

from __future__ import annotations

import asyncio

from redis import exceptions as rexc

from ._errors import (
    AuthenticationError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    KVKitError,
)

__all__ = ["REDIS_ERRORS", "is_retryable", "translate"]

REDIS_ERRORS = (rexc.RedisError, OSError, asyncio.TimeoutError)

_POOL_EXHAUSTED = ("no connection available", "too many connections")


def translate(exc: BaseException, where: str) -> KVKitError:
    """Map a redis-py (or socket) exception to a kvkit exception.

    Args:
        exc: The exception raised by redis-py.
        where: The redacted URL of the backend, for the message.

    Returns:
        The kvkit exception to raise ``from exc``.
    """
    text = str(exc)
    if isinstance(exc, (rexc.AuthenticationError, rexc.AuthorizationError, rexc.NoPermissionError)):
        return AuthenticationError(f"{where}: authentication failed: {text}")
    if isinstance(exc, (rexc.MaxConnectionsError,)) or (
        isinstance(exc, rexc.ConnectionError) and text.lower().rstrip(".") in _POOL_EXHAUSTED
    ):
        return BackendTimeout(f"{where}: no free connection in the pool within the timeout")
    if isinstance(exc, (rexc.TimeoutError, asyncio.TimeoutError, TimeoutError)):
        return BackendTimeout(f"{where}: timed out: {text or type(exc).__name__}")
    if isinstance(exc, (rexc.ConnectionError, rexc.ReadOnlyError, rexc.ClusterDownError, OSError)):
        return BackendUnavailable(f"{where}: unavailable: {text or type(exc).__name__}")
    return BackendError(f"{where}: {type(exc).__name__}: {text}")


def is_retryable(exc: BaseException) -> bool:
    """Whether an idempotent operation may be retried after ``exc``.

    Connection problems, timeouts and "server is loading / read-only replica / cluster down"
    are transient. Authentication failures and an exhausted pool are not: retrying a wrong
    password only locks accounts, and retrying on a full pool makes the congestion worse.
    """
    if isinstance(exc, (rexc.AuthenticationError, rexc.AuthorizationError, rexc.NoPermissionError)):
        return False
    if isinstance(exc, rexc.MaxConnectionsError):
        return False
    if isinstance(exc, rexc.ConnectionError) and str(exc).lower().rstrip(".") in _POOL_EXHAUSTED:
        return False
    return isinstance(
        exc,
        (
            rexc.ConnectionError,
            rexc.TimeoutError,
            rexc.ReadOnlyError,
            rexc.ClusterDownError,
            rexc.TryAgainError,
            OSError,
            asyncio.TimeoutError,
        ),
    )
