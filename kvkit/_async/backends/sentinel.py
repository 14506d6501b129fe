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

from ..._compat import acurrent_loop, adrop_client
from ..._redis_errors import REDIS_ERRORS
from .bounded import AsyncBoundedRedisBackend
from .redis import maint_notifications_off

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
        self._manager: Any = None

    def _build_client(self) -> Any:
        url = self.url
        options = url.options
        if self._manager is not None:
            # Built again for a new event loop: the old Sentinel connections belong to the
            # old loop and cannot be awaited from this one.
            self._drop_manager(self._manager)
        no_retry = Retry(NoBackoff(), 0)
        sentinel_kwargs: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "retry": no_retry,
        }
        if options.get("sentinel_auth", False):
            sentinel_kwargs["username"] = url.username
            sentinel_kwargs["password"] = url.password
        self._manager = AsyncSentinelManager(  # type: ignore[no-untyped-call]
            list(url.hosts), sentinel_kwargs=sentinel_kwargs
        )
        return self._manager.master_for(
            url.name,
            db=url.db,
            username=url.username,
            password=url.password,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.connect_timeout,
            # kvkit decides what is retried (idempotent operations only), not redis-py.
            retry=no_retry,
            health_check_interval=options.get("health_check_interval", 30),
            client_name=options.get("client_name"),
            max_connections=self.max_connections,
            **maint_notifications_off(),
        )

    @staticmethod
    def _drop_manager(manager: Any) -> None:
        for sentinel in manager.sentinels:
            adrop_client(sentinel)

    async def aclose(self) -> None:
        manager, self._manager = self._manager, None
        await super().aclose()
        if manager is None:
            return
        if self._loop is not acurrent_loop():
            self._drop_manager(manager)
            return
        for sentinel in manager.sentinels:
            # Closing a broken connection must not raise.
            with contextlib.suppress(*REDIS_ERRORS):
                await sentinel.aclose()
