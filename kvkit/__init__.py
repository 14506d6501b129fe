"""kvkit: cache, server-side sessions and message queues for Python web backends.

One API for sync code (:class:`Client`) and async code (:class:`AsyncClient`), over
backends chosen by URL: Redis (standalone, TLS, unix socket), an in-process memory store
and fakeredis.
"""

from __future__ import annotations

from ._async.client import AsyncClient
from ._async.protocols import (
    AsyncCache,
    AsyncLock,
    AsyncQueue,
    AsyncRateLimiter,
    AsyncRedisService,
    AsyncSessionStore,
)
from ._errors import (
    AuthenticationError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    DecodeError,
    InvalidArgument,
    KVKitError,
    LockNotOwned,
    LockTimeout,
    SerializationError,
)
from ._lock_base import LockInfo
from ._public import publish as _publish
from ._queue_types import Message, QueueStats
from ._ratelimit_base import Rate, RateLimitDecision
from ._sessions_base import SessionInfo
from ._settings import Settings
from ._sync.client import Client
from ._sync.protocols import Cache, Lock, Queue, RateLimiter, RedisService, SessionStore
from ._ttl import FOREVER
from ._types import CacheStats, Check, Health
from ._version import __version__

__all__ = [
    "FOREVER",
    "AsyncCache",
    "AsyncClient",
    "AsyncLock",
    "AsyncQueue",
    "AsyncRateLimiter",
    "AsyncRedisService",
    "AsyncSessionStore",
    "AuthenticationError",
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "Cache",
    "CacheStats",
    "Check",
    "Client",
    "ConfigError",
    "DecodeError",
    "Health",
    "InvalidArgument",
    "KVKitError",
    "Lock",
    "LockInfo",
    "LockNotOwned",
    "LockTimeout",
    "Message",
    "Queue",
    "QueueStats",
    "Rate",
    "RateLimitDecision",
    "RateLimiter",
    "RedisService",
    "SerializationError",
    "SessionInfo",
    "SessionStore",
    "Settings",
    "__version__",
]


# Public classes are shown as kvkit.X, not under their private home (kvkit._errors.X).
_publish(globals(), __all__, "kvkit")
