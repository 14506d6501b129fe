"""Translation of redis-py exceptions into kvkit's hierarchy, written once.

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
    ConfigError,
    KVKitError,
)

__all__ = ["REDIS_ERRORS", "is_retryable", "translate"]

# RedisClusterException is not a RedisError: the cluster client raises it when no startup
# node answers or the slot map is incomplete (with the real cause chained), and for misuse.
REDIS_ERRORS = (rexc.RedisError, rexc.RedisClusterException, OSError, asyncio.TimeoutError)

_POOL_EXHAUSTED = ("no connection available", "too many connections")
_DB_OUT_OF_RANGE = "db index is out of range"  # Redis's reply to SELECT beyond `databases`


def translate(exc: BaseException, where: str) -> KVKitError:
    """Map a redis-py (or socket) exception to a kvkit exception.

    Args:
        exc: The exception raised by redis-py.
        where: The redacted URL of the backend, for the message.

    Returns:
        The kvkit exception to raise ``from exc``.
    """
    cause = _cluster_cause(exc)
    if cause is not None:
        # "Redis Cluster cannot be connected ..." wraps what really happened (refused,
        # timed out, wrong password): classify by that.
        return translate(cause, where)
    text = str(exc)
    if _cluster_unavailable(exc):
        return BackendUnavailable(f"{where}: cluster unavailable: {text}")
    if isinstance(exc, (rexc.AuthenticationError, rexc.AuthorizationError, rexc.NoPermissionError)):
        return AuthenticationError(f"{where}: authentication failed: {text}")
    if isinstance(exc, rexc.ResponseError) and _DB_OUT_OF_RANGE in text.lower():
        # The URL's /db is within what any Redis accepts (checked at parse time) but beyond
        # this server's `databases` setting, which only the server knows: a configuration
        # error (never retried), not a backend failure.
        return ConfigError(
            f"{where}: the server has no such database ({text}); Redis has 16 (0-15) unless "
            "its `databases` setting says otherwise"
        )
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
    cause = _cluster_cause(exc)
    if cause is not None:
        return is_retryable(cause)
    if _cluster_unavailable(exc):
        return True
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


# Messages of RedisClusterException that mean "the cluster (or its slot map) is not reachable
# right now" rather than "kvkit misused the client": transient, like a refused connection.
_CLUSTER_TRANSIENT = ("cannot be connected", "not covered", "could not agree")


def _cluster_cause(exc: BaseException) -> BaseException | None:
    """The redis-py/socket error a RedisClusterException wraps, if it wraps one."""
    if not isinstance(exc, rexc.RedisClusterException):
        return None
    cause = exc.__cause__
    if isinstance(cause, (rexc.RedisError, OSError, asyncio.TimeoutError)):
        return cause
    return None


def _cluster_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the cluster topology is unreachable or incomplete (transient)."""
    if isinstance(exc, rexc.SlotNotCoveredError):
        return True
    if isinstance(exc, rexc.RedisClusterException):
        text = str(exc).lower()
        return any(marker in text for marker in _CLUSTER_TRANSIENT)
    return False
