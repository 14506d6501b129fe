"""Workarounds for redis-py behaviours, as sync/async pairs beside the Redis drivers.

The Redis backends (``kvkit/_async/backends/redis.py``, ``cluster.py``, ``sentinel.py``)
call the ``a``-prefixed half; ``scripts/unasync.py`` maps each name to the other half for
the generated sync backends (like the generic pairs of :mod:`kvkit._compat`). Each function
says which redis-py behaviour it works around; they touch redis-py private attributes, so
they are read with ``getattr`` defaults and must be re-checked when redis-py is upgraded.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "adrop_client",
    "anode_pool",
    "aprepare_cluster",
    "drop_client",
    "node_pool",
    "prepare_cluster",
]


# --- dropping a redis client without awaiting (redis.asyncio connections are loop-bound)
def adrop_client(client: Any) -> None:
    """Release a redis.asyncio client that belongs to another (usually closed) event loop.

    Its connections cannot be awaited from the current loop, and closing their transports
    normally would schedule callbacks on a loop that may be closed. So their sockets are
    closed directly and the connections forgotten, which also keeps asyncio and redis-py
    from warning about unclosed transports when they are garbage collected.

    Works around: redis.asyncio offers no way to close a client from outside its own event
    loop (``aclose()`` must run on it), so this reaches into the pool's and the nodes'
    private connection lists and the connections' ``_reader``/``_writer``.
    """
    connections: list[Any] = []
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        connections += list(getattr(pool, "_available_connections", ()))
        connections += list(getattr(pool, "_in_use_connections", ()))
    # redis.asyncio.cluster.RedisCluster has no pool: each node keeps its own connections.
    nodes_manager = getattr(client, "nodes_manager", None)
    if nodes_manager is not None:
        nodes = {**nodes_manager.startup_nodes, **nodes_manager.nodes_cache}
        for node in nodes.values():
            connections += list(getattr(node, "_connections", ()))
    for conn in connections:
        writer = getattr(conn, "_writer", None)
        transport = getattr(writer, "transport", None)
        if transport is not None:
            loop = getattr(transport, "_loop", None)
            if loop is not None and not loop.is_closed():
                transport.abort()
            else:
                # The loop is gone: close the socket ourselves and mark the transport
                # closed, which is what its own close() would have done on the loop.
                sock = getattr(transport, "_sock", None)
                if sock is not None:
                    sock.close()
                    transport._sock = None
                transport._closing = True
        conn._reader = None
        conn._writer = None


def drop_client(client: Any) -> None:
    """Close a sync redis-py client: it is bound to no event loop, so nothing to work around."""
    client.close()


# --- readying a Redis Cluster client before use (redis.asyncio loads the slot map lazily)
async def aprepare_cluster(client: Any) -> None:
    """Load a redis.asyncio RedisCluster's slot map, once, before a command uses it.

    redis.asyncio loads it lazily inside the first command; when several tasks send their
    first command at once, redis-py 8 can disconnect a node connection another task is still
    setting up (a raw ``AttributeError``). ``initialize()`` is locked and returns at once when
    the map is loaded, so calling it before every operation serializes (re)loading the map.

    The first load asks a *startup* node for the map over a connection of its own, and
    redis.asyncio then talks to the cluster through new node objects: that startup
    connection would stay open beside the node's pool, one more than ``max_connections``.
    It is closed once, right after the first load.

    Works around: the race in redis.asyncio's lazy slot-map load and its leftover startup
    connection (the ``_kvkit_startup_closed`` marker is kvkit's own attribute on the client).
    """
    await client.initialize()
    if getattr(client, "_kvkit_startup_closed", False):
        return
    client._kvkit_startup_closed = True
    manager = client.nodes_manager
    for name, node in list(manager.startup_nodes.items()):
        if manager.nodes_cache.get(name) is not node:
            await node.disconnect()


def prepare_cluster(client: Any) -> None:
    """Do nothing: the sync RedisCluster loads the slot map in its constructor and on errors."""


# --- a pool-like view of one Cluster node's connections (for one-off exchanges)
class _AsyncNodePool:
    """``get_connection()``/``release()`` over a redis.asyncio ClusterNode's connections."""

    def __init__(self, node: Any) -> None:
        self.node = node

    async def get_connection(self) -> Any:
        connection = self.node.acquire_connection()
        try:
            if not connection.is_connected:
                await connection.connect()
        except BaseException:
            # A half-made connection must not go back to the node's free list as it is.
            await connection.disconnect(nowait=True)
            self.node.release(connection)
            raise
        return connection

    async def release(self, connection: Any) -> None:
        self.node.release(connection)


def anode_pool(node: Any) -> Any:
    """A pool-like object (``await get_connection()``, ``await release(c)``) for ``node``.

    Works around: a redis.asyncio ClusterNode has no connection pool object, only
    ``acquire_connection()`` (which may hand out an unconnected connection) and a
    synchronous ``release()``; kvkit's raw exchanges expect redis-py's pool interface.
    """
    return _AsyncNodePool(node)


def node_pool(node: Any) -> Any:
    """The sync redis-py ClusterNode's own pool (its ``redis_connection``'s): no workaround."""
    return node.redis_connection.connection_pool
