"""The backend extension point: the scheme registry and the contracts a backend implements.

A backend is chosen by the scheme of its URL. To add one, implement the backend base class
and its three drivers, in both flavours, and register a scheme that names them::

    from kvkit.backends import SchemeSpec, register_scheme

    register_scheme(
        SchemeSpec(
            scheme="acme",
            family="custom",  # acme://[user:password@]host[:port][,…][/path]
            options={},
            sync_factory="acme_kv.kvkit:AcmeBackend",  # a Backend subclass
            async_factory="acme_kv.kvkit:AsyncAcmeBackend",  # an AsyncBackend subclass
        )
    )

A package can instead publish the :class:`SchemeSpec` in the ``kvkit.backends``
entry-point group, named after its scheme: it is registered the first time a URL of that
scheme is parsed.

The backend classes (:class:`Backend` / :class:`AsyncBackend`) are built with the parsed
URL and the client's :class:`kvkit.Settings`, and must do no I/O until first used. Their
``cache_driver()``, ``session_driver()`` and ``queue_driver()`` return the drivers
(:class:`CacheDriver`, :class:`SessionDriver`, :class:`QueueDriver` and their ``Async``
twins; ``limiter_driver()`` and ``lock_driver()`` are optional and return a
:class:`LimiterDriver` / :class:`LockDriver`, refusing with :class:`kvkit.ConfigError` by
default; queue pops return :class:`RawMessage`, session
details :class:`SessionRecord`, a refused increment raises :class:`IncrRefused`). Drivers
store bytes under full keys, each method one atomic step: the services
above them do validation, key layout, serialization and TTL policy. The conformance suite
in kvkit's ``tests/_async`` describes the behaviour every backend must have.
"""

from __future__ import annotations

from ._async.backends.base import (
    AsyncBackend,
    AsyncCacheDriver,
    AsyncLimiterDriver,
    AsyncLockDriver,
    AsyncQueueDriver,
    AsyncSessionDriver,
)
from ._counters import IncrRefused
from ._public import publish as _publish
from ._queue_types import RawMessage
from ._sessions_base import SessionRecord
from ._sync.backends.base import (
    Backend,
    CacheDriver,
    LimiterDriver,
    LockDriver,
    QueueDriver,
    SessionDriver,
)
from ._urls import ParsedURL, SchemeSpec, register_scheme, schemes

__all__ = [
    "AsyncBackend",
    "AsyncCacheDriver",
    "AsyncLimiterDriver",
    "AsyncLockDriver",
    "AsyncQueueDriver",
    "AsyncSessionDriver",
    "Backend",
    "CacheDriver",
    "IncrRefused",
    "LimiterDriver",
    "LockDriver",
    "ParsedURL",
    "QueueDriver",
    "RawMessage",
    "SchemeSpec",
    "SessionDriver",
    "SessionRecord",
    "register_scheme",
    "schemes",
]

_publish(globals(), __all__, __name__)
