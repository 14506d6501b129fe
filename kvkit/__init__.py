"""kvkit: cache, server-side sessions and message queues for Python web backends.

One API for sync code (:class:`Client`) and async code (:class:`AsyncClient`), over
backends chosen by URL: Redis (standalone, TLS, unix socket), an in-process memory store
and fakeredis.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._async.client import AsyncClient
from ._async.protocols import AsyncCache
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
from ._settings import Settings
from ._sync.client import Client
from ._sync.protocols import Cache
from ._ttl import FOREVER
from ._types import CacheStats, Check, Health

__all__ = [
    "FOREVER",
    "AsyncCache",
    "AsyncClient",
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
    "SerializationError",
    "Settings",
    "__version__",
]
