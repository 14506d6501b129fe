"""A bounded-concurrency base for Redis clients whose redis-py pool cannot wait.

redis-py's standalone client has a ``BlockingConnectionPool`` that waits for a free
connection; the Cluster client (one small pool per node) and the Sentinel pool do not: they
raise ``MaxConnectionsError`` at once. kvkit promises the same on every backend: a pool
bounded *and* waiting up to the socket timeout, then :class:`kvkit.BackendTimeout`. So
these backends put a gate of ``max_connections`` slots in front of every operation: at most
``max_connections`` operations run at a time, each using at most one connection per server,
so no server ever sees more than ``max_connections`` connections from this backend, and a
caller beyond that waits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import MaxConnectionsError

from ..._autopipeline import AsyncAutoPipeline, AsyncGatedLender, AsyncPoolLender
from ..._compat import AsyncGate, acurrent_loop
from ..._loops import LoopLocal
from .redis import AsyncRedisBackend

if TYPE_CHECKING:
    from ..._settings import Settings
    from ..._urls import ParsedURL

__all__ = ["AsyncBoundedRedisBackend"]


def _forget(gate: AsyncGate) -> None:
    """A gate holds no resource: dropping it is forgetting it."""


# SYNC-TEXT: "Like the client, the gate exists once per event loop (on the async side),
#   because asyncio primitives are loop-bound: each loop gets ``max_connections`` slots in
#   front of its own pool." -> "Threads share the gate."
class AsyncBoundedRedisBackend(AsyncRedisBackend):
    """A Redis backend whose operations pass a gate of ``max_connections`` slots.

    Subclasses build their redis-py client in :meth:`_build_client`. Like the client, the
    gate exists once per event loop (on the async side), because asyncio primitives are
    loop-bound: each loop gets ``max_connections`` slots in front of its own pool.
    """

    def __init__(self, url: ParsedURL, settings: Settings) -> None:
        super().__init__(url, settings)
        # async: One gate per event loop, like the clients (asyncio primitives are loop-bound).
        # sync: One gate for all threads (current_loop() is always None on this side).
        self._gates: LoopLocal[AsyncGate] = LoopLocal(self._new_gate, _forget)

    def _new_gate(self) -> AsyncGate:
        return AsyncGate(self.max_connections)

    def _build(self) -> Any:
        return self._build_client()

    def _gated_lender(self, pool: Any) -> AsyncGatedLender:
        """Lends ``pool``'s connections, each holding a gate slot like any operation's."""
        return AsyncGatedLender(
            AsyncPoolLender(pool), self._gates.get(acurrent_loop()), self.socket_timeout
        )

    def _new_pipe(self) -> AsyncAutoPipeline:
        return AsyncAutoPipeline(
            self._gated_lender(self.client.connection_pool), timeout=self.socket_timeout
        )

    def _build_client(self) -> Any:
        """Create the redis-py client (no I/O)."""
        raise NotImplementedError

    async def run(self, op: Callable[[Any], Awaitable[Any]], *, idempotent: bool) -> Any:
        """Run ``op`` like :meth:`AsyncRedisBackend.run`, at most ``max_connections`` at once.

        Waiting for a slot counts as waiting for a pool connection: bounded by the socket
        timeout, then :class:`kvkit.BackendTimeout` (not retried, like an exhausted pool).
        """

        async def bounded(client: Any) -> Any:
            gate = self._gates.get(acurrent_loop())
            if not await gate.acquire(self.socket_timeout):
                raise MaxConnectionsError("no connection available")
            try:
                return await op(client)
            finally:
                gate.release()

        return await super().run(bounded, idempotent=idempotent)
