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
from ._queue_types import Message, QueueStats
from ._settings import Settings
from ._sync.client import Client
from ._sync.protocols import Cache, Lock, Queue, RedisService, SessionStore
from ._ttl import FOREVER
from ._types import CacheStats, Check, Health
from ._version import __version__

__all__ = [
    "FOREVER",
    "AsyncCache",
    "AsyncClient",
    "AsyncLock",
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
    "Lock",
    "LockInfo",
    "LockNotOwned",
    "LockTimeout",
    "Message",
    "Queue",
    "QueueStats",
    "RedisService",
    "SerializationError",
    "SessionStore",
    "Settings",
    "__version__",
]


def _publish_under_kvkit() -> None:
    """Show public names as ``kvkit.X`` rather than their private home (``kvkit._errors.X``).

    Tracebacks, ``repr`` of classes and error reports then name what users import. Pickling
    still works because every name is importable from ``kvkit`` itself. Done once, here,
    for every exported class and function defined in kvkit's private modules (httpx does the
    same); values such as ``FOREVER`` keep their type's module.
    """
    import inspect
    import typing

    namespace = globals()
    for name in __all__:
        value = namespace[name]
        if not isinstance(value, type) or not value.__module__.startswith("kvkit."):
            continue
        own = inspect.get_annotations(value)
        if own:
            # typing.get_type_hints() evaluates string annotations in the namespace of
            # __module__: resolve them in the defining module first, or hints such as
            # ``Any`` would stop resolving once the class claims to live in ``kvkit``.
            try:
                hints = typing.get_type_hints(value)
            except NameError:  # names imported only under TYPE_CHECKING: leave as they are
                pass
            else:
                value.__annotations__ = {key: hints[key] for key in own}
        value.__module__ = "kvkit"


_publish_under_kvkit()
