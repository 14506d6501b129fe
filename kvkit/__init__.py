"""kvkit: cache, server-side sessions and message queues for Python web backends.

One API for sync code (:class:`Client`) and async code (:class:`AsyncClient`), over
backends chosen by URL: Redis (standalone, TLS, unix socket), an in-process memory store
and fakeredis.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._async.client import AsyncClient
from ._async.protocols import AsyncCache
from ._async.queue import AsyncQueue
from ._async.service import AsyncRedisService
from ._async.sessions import AsyncSessionStore
from ._errors import (
    AuthenticationError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    DecodeError,
    InvalidArgument,
    KVKitError,
    SerializationError,
)
from ._queue_types import Message, QueueStats
from ._settings import Settings
from ._sync.client import Client
from ._sync.protocols import Cache
from ._sync.queue import Queue
from ._sync.service import RedisService
from ._sync.sessions import SessionStore
from ._ttl import FOREVER
from ._types import CacheStats, Check, Health

__all__ = [
    "FOREVER",
    "AsyncCache",
    "AsyncClient",
    "AsyncQueue",
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
    "Message",
    "Queue",
    "QueueStats",
    "RedisService",
    "SerializationError",
    "SessionStore",
    "Settings",
    "__version__",
]
