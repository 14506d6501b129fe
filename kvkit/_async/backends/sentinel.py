"""``redis+sentinel://host:port[,host:port…]/SERVICE[/db]``: the master of SERVICE via Sentinel.

redis-py's Sentinel-managed pool asks the Sentinels for the master's address whenever it
opens a connection, and turns a ``READONLY`` reply (we are talking to a demoted master) into
a connection error after dropping that connection. Combined with :meth:`run`'s retries of
idempotent operations, a client follows a failover by itself: the first operation after the
switch fails over to a fresh connection, which re-discovers the master; idle connections to
the old master are closed as soon as the new address is seen. Non-idempotent operations
that hit the switch raise :class:`kvkit.BackendUnavailable` (their outcome is unknown).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel as AsyncSentinelManager
from redis.backoff import NoBackoff

from ..._compat import acurrent_loop
from ..._errors import ConfigError
from ..._loops import LoopLocal, release_elsewhere
from ..._redis_compat import adrop_client
from ..._redis_errors import REDIS_ERRORS
from ..._redis_kwargs import maint_notifications_off
from .bounded import AsyncBoundedRedisBackend

if TYPE_CHECKING:
    from ..._settings import Settings
    from ..._urls import ParsedURL

__all__ = ["AsyncSentinelBackend"]


class AsyncSentinelBackend(AsyncBoundedRedisBackend):
    """The master of a Sentinel-monitored service.

    Credentials in the URL are the master's; they are sent to the Sentinels too only with
    ``?sentinel_auth=true``. ``max_connections`` bounds the connections to the master, and
    callers beyond it wait up to the socket timeout (see
    :class:`~kvkit._async.backends.bounded.AsyncBoundedRedisBackend`).
    """

    kind = "sentinel"

    def __init__(self, url: ParsedURL, settings: Settings) -> None:
        super().__init__(url, settings)
        # async: One Sentinel manager per event loop, like the master clients built from it.
        # sync: One Sentinel manager for all threads, like the master client built from it.
        self._managers: LoopLocal[Any] = LoopLocal(self._new_manager, self._drop_manager)

    def _near_cache_size(self, settings: Settings) -> int:
        if settings.near_cache:
            # After a failover the invalidation connection may stay open to the old master,
            # which no longer sees the writes: invalidations would be lost without notice.
            raise ConfigError(
                "near_cache is not available on redis+sentinel:// (a failover would "
                "silently stop its invalidations); set Settings.near_cache=0 for this URL"
            )
        return 0

    def _new_manager(self) -> Any:
        url = self.url
        sentinel_kwargs: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        if url.options.get("sentinel_auth", False):
            sentinel_kwargs["username"] = url.username
            sentinel_kwargs["password"] = url.password
        return AsyncSentinelManager(  # type: ignore[no-untyped-call]
            list(url.hosts), sentinel_kwargs=sentinel_kwargs
        )

    def _build_client(self) -> Any:
        url = self.url
        manager = self._managers.get(acurrent_loop())
        return manager.master_for(
            url.name,
            db=url.db,
            max_connections=self.max_connections,
            **self._connection_kwargs(),
            **maint_notifications_off(),
        )

    @staticmethod
    def _drop_manager(manager: Any) -> None:
        for sentinel in manager.sentinels:
            adrop_client(sentinel)

    def discard(self) -> None:
        super().discard()
        for loop, manager in self._managers.take_all():
            release_elsewhere(loop, self._drop_manager, manager)

    async def aclose(self) -> None:
        await super().aclose()
        here = acurrent_loop()
        for loop, manager in self._managers.take_idle(here):
            if loop is not here:  # a stopped or closed loop (async side only): drop
                self._drop_manager(manager)
                continue
            for sentinel in manager.sentinels:
                # Closing a broken connection must not raise.
                with contextlib.suppress(*REDIS_ERRORS):
                    await sentinel.aclose()
