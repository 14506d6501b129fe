"""``redis+cluster://`` and ``rediss+cluster://``: Redis Cluster through redis-py's RedisCluster.

Keys are spread over 16384 hash slots, and a command may only touch keys of one slot. The
single-key primitives of :class:`AsyncRedisCacheDriver` therefore run unchanged, except
that its one-key MULTI pipelines become Lua scripts (see ``_INCR``). The multi-key
operations group their keys by slot and send one command per slot, all in one pipeline --
redis-py sends the pipeline to every node involved at once, so a batch costs one round trip
per node, not per key. ``clear()`` scans every primary.

Batches that span slots are not atomic on Cluster (no MULTI across slots): a reader may see
part of a ``set_many`` while it is applied. Everything else keeps its single-server meaning.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisClusterClient
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError

from ..._autopipeline import AsyncLender
from ..._compat import acurrent_loop
from ..._errors import BackendError
from ..._keys import glob_escape
from ..._redis_compat import adrop_client, anode_pool, aprepare_cluster
from ..._redis_kwargs import tls_kwargs
from .base import AsyncLockDriver
from .bounded import AsyncBoundedRedisBackend
from .redis import AsyncRedisBackend, AsyncRedisCacheDriver
from .redis_lock import AsyncClusterLockDriver

if True:  # ASYNC
    from ..._autopipeline import AsyncAutoPipeline
    from ..._loops import LoopLocal
    from ..._pipeline import command_key, pack_command

if TYPE_CHECKING:
    from ..._settings import Settings
    from ..._urls import ParsedURL

__all__ = ["AsyncClusterBackend", "AsyncClusterCacheDriver", "group_by_slot"]

# Keys per UNLINK while clearing: small enough to keep each command short on the server.
_CLEAR_BATCH = 500


def group_by_slot(keys: list[str]) -> dict[int, list[int]]:
    """Return ``{slot: [indexes into keys]}``, slots in first-seen order.

    Hash tags are honoured (``{user1}:a`` and ``{user1}:b`` share a slot), exactly as the
    server computes them.
    """
    groups: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key_slot(key.encode()), []).append(index)
    return groups


class AsyncClusterCacheDriver(AsyncRedisCacheDriver):
    """Cache primitives on Cluster: multi-key operations split by hash slot."""

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        if not keys:
            return []
        if self.near is not None:
            return await self._b.near_read(keys)
        groups = group_by_slot(keys)
        if len(groups) == 1:
            return list(await self._b.command("MGET", *keys, idempotent=True))

        async def fetch(r: Any) -> Any:
            pipe = r.pipeline(transaction=False)
            for indexes in groups.values():
                # redis-py blocks pipe.mget() on Cluster only because it cannot know the
                # keys share a slot; these do, so the raw command is safe.
                pipe.execute_command("MGET", *[keys[i] for i in indexes])
            return await pipe.execute()

        replies = await self._b.run(fetch, idempotent=True)
        out: list[bytes | None] = [None] * len(keys)
        for indexes, values in zip(groups.values(), replies, strict=True):
            for index, value in zip(indexes, values, strict=True):
                out[index] = value
        return out

    async def _set_many(self, items: list[tuple[str, bytes]], ttl_ms: int | None) -> None:
        groups = group_by_slot([key for key, _ in items])

        async def write(r: Any) -> Any:
            pipe = r.pipeline(transaction=False)
            if ttl_ms is None:
                for indexes in groups.values():
                    args: list[Any] = []
                    for i in indexes:
                        args += items[i]
                    pipe.execute_command("MSET", *args)
            else:
                for key, value in items:
                    pipe.set(key, value, px=ttl_ms)
            return await pipe.execute()

        await self._b.run(write, idempotent=True)

    async def _delete_many(self, keys: list[str]) -> int:
        groups = group_by_slot(keys)

        async def delete(r: Any) -> Any:
            pipe = r.pipeline(transaction=False)
            for indexes in groups.values():
                pipe.execute_command("DEL", *[keys[i] for i in indexes])
            return await pipe.execute()

        return sum(int(n) for n in await self._b.run(delete, idempotent=True))

    async def _clear(self, prefix: str) -> int:
        pattern = glob_escape(prefix) + "*"

        async def unlink(r: Any, batch: list[bytes]) -> int:
            pipe = r.pipeline(transaction=False)
            for indexes in group_by_slot([k.decode() for k in batch]).values():
                pipe.execute_command("UNLINK", *[batch[i] for i in indexes])
            return sum(int(n) for n in await pipe.execute())

        async def sweep(r: Any) -> int:
            deleted = 0
            batch: list[bytes] = []
            # PRIMARIES: SCAN runs on every primary, each with its own cursor (a replica
            # holds the same keys again). The flag is resolved after redis-py has loaded
            # the slot map, so this also works as the very first command of a client.
            async for key in r.scan_iter(match=pattern, count=1000, target_nodes=r.PRIMARIES):
                batch.append(key)
                if len(batch) >= _CLEAR_BATCH:
                    deleted += await unlink(r, batch)
                    batch = []
            if batch:
                deleted += await unlink(r, batch)
            return deleted

        return int(await self._b.run(sweep, idempotent=True))


class AsyncClusterBackend(AsyncBoundedRedisBackend):
    """``redis+cluster://host:port[,host:port…]`` (``rediss+cluster://`` for TLS).

    Any reachable node is enough to discover the whole cluster. ``max_connections`` bounds
    the connections to *each* node, and (through the gate of
    :class:`~kvkit._async.backends.bounded.AsyncBoundedRedisBackend`) callers beyond it wait
    up to the socket timeout. Only database 0 exists on Cluster.
    """

    kind = "cluster"

    def __init__(self, url: ParsedURL, settings: Settings) -> None:
        super().__init__(url, settings)
        self._cache = AsyncClusterCacheDriver(self)
        if True:  # ASYNC
            # Per event loop: one auto-pipeline per node, {node name: (node, pipeline)}.
            self._node_pipes: LoopLocal[dict[str, tuple[Any, AsyncAutoPipeline]]] = LoopLocal(
                dict, _abandon_all
            )

    def lock_driver(self) -> AsyncLockDriver:
        return AsyncClusterLockDriver(self)

    def _build_client(self) -> Any:
        url = self.url
        # No redis-py retries (see _connection_kwargs); MOVED/ASK redirections are still
        # followed by redis-py itself.
        kwargs: dict[str, Any] = {
            **self._connection_kwargs(),
            "max_connections": self.max_connections,
            "require_full_coverage": True,
        }
        if url.spec.tls:
            kwargs.update(ssl=True, **tls_kwargs(url))
        # The sync ClusterNode is untyped in redis-py, the async one is typed.
        nodes = [
            ClusterNode(host, port)  # type: ignore[no-untyped-call,unused-ignore]
            for host, port in url.hosts
        ]
        return AsyncRedisClusterClient(startup_nodes=nodes, **kwargs)

    # -- near cache: one invalidation channel per node ----------------------------------------
    async def near_read(self, keys: list[str]) -> list[bytes | None]:
        """Tracked reads grouped by node, each through that node's channel."""

        async def read(client: Any) -> list[bytes | None]:
            await aprepare_cluster(client)
            groups: dict[str, tuple[Any, list[int]]] = {}
            for index, key in enumerate(keys):
                node = client.get_node_from_key(key)
                groups.setdefault(node.name, (node, []))[1].append(index)
            out: list[bytes | None] = [None] * len(keys)
            for node, indexes in groups.values():
                part = [keys[i] for i in indexes]
                try:
                    values = await self._near_read(client, part, node.host, node.port)
                except BackendError as exc:
                    if not isinstance(exc.__cause__, (MovedError, AskError)):
                        raise
                    # The slot moved: read through redis-py (it follows the redirection
                    # and refreshes its map); not cached this time.
                    values = [await self.command("GET", k, idempotent=True) for k in part]
                for index, value in zip(indexes, values, strict=True):
                    out[index] = value
            return out

        # No gate slot per read: the connections it uses hold theirs (see _replies).
        values: list[bytes | None] = await AsyncRedisBackend.run(self, read, idempotent=True)
        return values

    if True:  # ASYNC

        def _reply_pipe(self, client: Any, key: str) -> AsyncAutoPipeline:
            return self._node_pipe(client.get_node_from_key(key))

    def _reply_lender(self, client: Any, key: str) -> AsyncLender:
        return self._gated_lender(anode_pool(client.get_node_from_key(key)))

    def _drop(self, client: Any) -> None:
        adrop_client(client)
        # redis.asyncio's RedisCluster warns "Unclosed RedisCluster client" when it is
        # collected unless its aclose() ran (tracked by its _initialize flag). Its
        # connections were just closed, so mark it closed too.
        if hasattr(client, "_initialize"):
            client._initialize = True

    async def run(self, op: Callable[[Any], Awaitable[Any]], *, idempotent: bool) -> Any:
        """Run ``op`` under the bounded policy, with the slot map loaded first."""

        async def ready(client: Any) -> Any:
            await aprepare_cluster(client)
            return await op(client)

        return await super().run(ready, idempotent=idempotent)

    # SYNC-TEXT: " With auto-pipelining on, a keyed command joins the pipeline of the node
    #   that serves its slot; a MOVED/ASK reply (the command did not run) sends it through
    #   redis-py, which follows the redirection and refreshes its slot map." -> ""
    async def command(self, *args: Any, idempotent: bool) -> Any:
        """Run one command under :meth:`run`'s policy, routed to its key's slot by redis-py.

        With auto-pipelining on, a keyed command joins the pipeline of the node that serves
        its slot; a MOVED/ASK reply (the command did not run) sends it through redis-py,
        which follows the redirection and refreshes its slot map.
        """
        if True:  # ASYNC
            key = command_key(args) if self.auto_pipeline else None
            if key is not None:
                packed = pack_command(args)
                try:
                    # The pipeline's lender holds the gate slot, not each command.
                    return await AsyncRedisBackend.run(
                        self, lambda r: self._on_node(r, key, packed), idempotent=idempotent
                    )
                except _Redirected:
                    pass
        return await self.run(lambda r: r.execute_command(*args), idempotent=idempotent)

    if True:  # ASYNC

        def _node_pipe(self, node: Any) -> AsyncAutoPipeline:
            pipes = self._node_pipes.get(acurrent_loop())
            entry = pipes.get(node.name)
            if entry is None or entry[0] is not node:
                # A node object redis-py replaced (new slot map) gets a pipeline of its own;
                # the old one drains and gives its connections back by itself.
                pipe = AsyncAutoPipeline(
                    self._gated_lender(anode_pool(node)), timeout=self.socket_timeout
                )
                entry = pipes[node.name] = (node, pipe)
            return entry[1]

        async def _on_node(self, client: Any, key: Any, packed: bytes) -> Any:
            await aprepare_cluster(client)
            pipe = self._node_pipe(client.get_node_from_key(key))
            try:
                return await pipe.call(packed)
            except (MovedError, AskError) as exc:
                raise _Redirected from exc

        async def aclose(self) -> None:
            here = acurrent_loop()
            for loop, pipes in self._node_pipes.take_idle(here):
                for _, pipe in pipes.values():
                    if loop is here:
                        await pipe.aclose()
                    else:
                        pipe.abandon()
            await super().aclose()

        def discard(self) -> None:
            for _, pipes in self._node_pipes.take_all():
                _abandon_all(pipes)
            super().discard()


if True:  # ASYNC

    class _Redirected(Exception):
        """A pipelined command got MOVED/ASK: it did not run; redis-py must route it."""

    def _abandon_all(pipes: dict[str, tuple[Any, AsyncAutoPipeline]]) -> None:
        """Forget the node pipelines of a closed event loop (their sockets go with it)."""
        for _, pipe in pipes.values():
            pipe.abandon()
