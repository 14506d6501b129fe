"""redis+cluster:// specifics on a real 3-master Cluster (the conformance suites also run there).

Covered here: keys really spread over every node, multi-key operations across slots,
clear() on every primary, hash tags, the per-node connection bound and its wait, error
translation when the cluster is unreachable, and rediss+cluster:// on a TLS cluster.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

import kvkit
from kvkit._async.backends.cluster import group_by_slot
from tests.servers import HOST, RedisServer, TLSFiles, _run_tool, free_port, wait_until

pytestmark = pytest.mark.cluster


def _settings(url: str, **overrides: object) -> kvkit.Settings:
    prefix = "c" + uuid.uuid4().hex[:10]
    return kvkit.Settings(url=url, prefix=prefix, **overrides)  # type: ignore[arg-type]


def _owners(cluster, keys: list[str]) -> set[int]:
    """Ports of the nodes that hold ``keys`` (asked node by node, no redirection)."""
    owners = set()
    for node in cluster.nodes:
        with node.client() as raw:
            for key in keys:
                try:
                    if raw.exists(key):
                        owners.add(node.port)
                except redis.ResponseError:  # MOVED: another node owns the slot
                    pass
    return owners


def test_group_by_slot_honours_hash_tags():
    """Keys with the same {tag} share a slot; order inside a group is kept."""
    keys = ["{u1}:a", "x", "{u1}:b", "y", "{u1}:c"]
    groups = group_by_slot(keys)
    assert [0, 2, 4] in groups.values()
    assert sorted(i for idx in groups.values() for i in idx) == list(range(5))


def test_batches_span_every_node(redis_cluster):
    """set_many/get_many/delete_many work across slots and keys land on all 3 nodes."""
    with kvkit.Client(settings=_settings(redis_cluster.url)) as client:
        cache = client.cache
        items = {f"key{i}": {"i": i} for i in range(200)}
        cache.set_many(items)
        assert _owners(redis_cluster, [cache.prefix + k for k in items]) == {
            n.port for n in redis_cluster.nodes
        }
        wanted = ["missing", *reversed(list(items)), "also-missing"]
        assert cache.get_many(wanted) == items
        cache.set_many({f"ttl{i}": i for i in range(50)}, ttl=30)
        assert all(25 < (cache.ttl(f"ttl{i}") or 0) <= 30 for i in range(0, 50, 7))
        assert cache.delete_many([*items, "missing"]) == 200
        assert cache.get_many(list(items)) == {}
        assert cache.clear() == 50


async def test_async_batches_and_clear_on_every_primary(redis_cluster):
    """The async driver does the same, and clear() removes keys from every primary only."""
    settings = _settings(redis_cluster.url)
    other = _settings(redis_cluster.url)
    async with (
        kvkit.AsyncClient(settings=settings) as client,
        kvkit.AsyncClient(settings=other) as bystander,
    ):
        await client.cache.set_many({f"k{i}": i for i in range(300)})
        await bystander.cache.set_many({f"k{i}": i for i in range(30)})
        assert len(await client.cache.get_many([f"k{i}" for i in range(300)])) == 300
        assert await client.cache.clear() == 300
        assert await client.cache.get_many([f"k{i}" for i in range(300)]) == {}
        assert len(await bystander.cache.get_many([f"k{i}" for i in range(30)])) == 30
        assert await bystander.cache.clear() == 30


async def test_hash_tagged_keys_and_single_key_atomics(redis_cluster):
    """User keys with {tags}, incr with TTL, touch(FOREVER) and get_or_set work on Cluster."""
    async with kvkit.AsyncClient(settings=_settings(redis_cluster.url)) as client:
        cache = client.cache
        await cache.set_many({"{cart:7}:items": [1], "{cart:7}:total": 3})
        assert await cache.get_many(["{cart:7}:items", "{cart:7}:total"]) == {
            "{cart:7}:items": [1],
            "{cart:7}:total": 3,
        }
        assert await cache.incr("hits", 2, ttl=30) == 2
        assert await cache.incr("hits") == 3
        assert 25 < (await cache.ttl("hits") or 0) <= 30
        assert await cache.touch("hits", ttl=kvkit.FOREVER) is True
        assert await cache.ttl("hits") == float("inf")
        assert await cache.touch("nope", ttl=kvkit.FOREVER) is False
        calls = []

        async def compute() -> int:
            calls.append(1)
            await asyncio.sleep(0.05)
            return 42

        results = await asyncio.gather(*(cache.get_or_set("hot", compute) for _ in range(20)))
        assert results == [42] * 20
        assert len(calls) == 1
        await cache.clear()


def _connections_per_node(cluster, name: str) -> dict[int, int]:
    counts = {}
    for node in cluster.nodes:
        with node.client() as raw:
            counts[node.port] = sum(1 for c in raw.client_list() if c.get("name") == name)
    return counts


def test_threads_share_a_bounded_pool_per_node(redis_cluster):
    """24 threads on max_connections=3 all succeed; no node sees more than 3 connections."""
    name = "kvkit-cl-" + uuid.uuid4().hex[:6]
    url = f"{redis_cluster.url}?client_name={name}&max_connections=3"
    errors: list[BaseException] = []
    peak: dict[int, int] = {}
    with kvkit.Client(settings=_settings(url)) as client:

        def work(n: int) -> None:
            try:
                for i in range(40):
                    client.cache.set(f"t{n}:{i}", i)
                    assert client.cache.get(f"t{n}:{i}") == i
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(24)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            for port, count in _connections_per_node(redis_cluster, name).items():
                peak[port] = max(peak.get(port, 0), count)
            time.sleep(0.01)
        for t in threads:
            t.join()
        assert errors == []
        assert 0 < max(peak.values()) <= 3
        client.cache.clear()


async def test_tasks_share_a_bounded_pool_per_node(redis_cluster):
    """200 tasks on max_connections=4 all succeed; no node sees more than 4 connections."""
    name = "kvkit-cla-" + uuid.uuid4().hex[:6]
    url = f"{redis_cluster.url}?client_name={name}&max_connections=4"
    async with kvkit.AsyncClient(settings=_settings(url)) as client:

        async def work(n: int) -> int:
            await client.cache.set(f"a{n}", n)
            return await client.cache.get(f"a{n}")

        assert await asyncio.gather(*(work(n) for n in range(200))) == list(range(200))
        counts = await asyncio.to_thread(_connections_per_node, redis_cluster, name)
        assert 0 < max(counts.values()) <= 4
        await client.cache.clear()


def test_full_pool_waits_then_backend_timeout(redis_cluster):
    """With every slot taken, a caller waits socket_timeout, then gets BackendTimeout."""
    settings = _settings(redis_cluster.url, max_connections=1, socket_timeout=0.3)
    with kvkit.Client(settings=settings) as client:
        client.cache.set("k", 1)
        backend = client.backend()
        assert backend._gates.get(None).acquire(1.0)  # another caller holds the only slot
        try:
            start = time.monotonic()
            with pytest.raises(kvkit.BackendTimeout, match="no free connection"):
                client.cache.get("k")
            assert 0.25 < time.monotonic() - start < 1.5
        finally:
            backend._gates.get(None).release()
        assert client.cache.get("k") == 1
        client.cache.clear()


def test_unreachable_cluster_is_backend_unavailable():
    """No reachable seed node: BackendUnavailable after bounded retries, cause chained."""
    url = f"redis+cluster://{HOST}:{free_port()},{HOST}:{free_port()}"
    settings = _settings(url, retries=1, connect_timeout=0.5)
    with kvkit.Client(settings=settings) as client:
        start = time.monotonic()
        with pytest.raises(kvkit.BackendUnavailable) as info:
            client.cache.get("k")
        assert time.monotonic() - start < 3
        assert info.value.__cause__ is not None
        assert client.health().status == "fail"
        # Script-based operations too (their scripts are registered inside the policy).
        with pytest.raises(kvkit.BackendUnavailable):
            client.cache.incr("n")
        with pytest.raises(kvkit.BackendUnavailable):
            client.sessions.create({"a": 1})
        with pytest.raises(kvkit.BackendUnavailable):
            client.queue("q").push(1)


async def test_unreachable_cluster_async():
    """The async client raises the same typed error."""
    url = f"redis+cluster://{HOST}:{free_port()}"
    async with kvkit.AsyncClient(settings=_settings(url, retries=0)) as client:
        with pytest.raises(kvkit.BackendUnavailable):
            await client.cache.set("k", 1)


def test_standalone_server_behind_a_cluster_url(redis_server):
    """Pointing redis+cluster:// at a non-cluster server fails with a clear typed error."""
    url = f"redis+cluster://{HOST}:{redis_server.port}"
    with kvkit.Client(settings=_settings(url, retries=0)) as client:
        with pytest.raises(kvkit.BackendError, match="(?i)cluster"):
            client.cache.get("k")


def test_cluster_survives_client_kill(redis_cluster):
    """CLIENT KILL of every connection on every node: the next operations succeed."""
    name = "kvkit-kill-" + uuid.uuid4().hex[:6]
    with kvkit.Client(settings=_settings(f"{redis_cluster.url}?client_name={name}")) as client:
        client.cache.set_many({f"k{i}": i for i in range(30)})
        for node in redis_cluster.nodes:
            with node.client() as raw:
                for conn in raw.client_list():
                    if conn.get("name") == name:
                        raw.client_kill_filter(_id=conn["id"])
        assert len(client.cache.get_many([f"k{i}" for i in range(30)])) == 30
        assert client.cache.get("k3") == 3
        client.cache.clear()


# --------------------------------------------------------------------------- TLS cluster


@pytest.fixture(scope="module")
def tls_cluster(tls_files: TLSFiles, tmp_path_factory) -> Iterator[list[RedisServer]]:
    """Three TLS-only cluster nodes (tls-cluster yes), joined into one cluster."""
    base = tmp_path_factory.mktemp("tls-cluster")
    nodes = [
        RedisServer(
            directory=base / f"node-{i}",
            tls=tls_files,
            cluster_enabled=True,
            extra_config=["tls-cluster yes", "cluster-node-timeout 5000"],
        )
        for i in range(3)
    ]
    try:
        for node in nodes:
            node.start()
        tls_args = ["--tls", "--cacert", tls_files.ca_cert]
        tls_args += ["--cert", tls_files.client_cert, "--key", tls_files.client_key]
        _run_tool(
            ["redis-cli", *tls_args, "--cluster", "create"]
            + [f"{HOST}:{n.port}" for n in nodes]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            timeout=60,
        )

        def ready() -> bool:
            for node in nodes:
                with node.client(decode_responses=True) as raw:
                    info = raw.execute_command("CLUSTER INFO")
                if info.get("cluster_state") != "ok" or info.get("cluster_known_nodes") != "3":
                    return False
            return True

        wait_until(ready, timeout=20, what="the TLS cluster to be ok", interval=0.1)
        yield nodes
    finally:
        for node in nodes:
            node.close()


def test_rediss_cluster_verifies_certificates(tls_cluster, tls_files):
    """rediss+cluster:// verifies by default; a wrong CA fails; none must be explicit."""
    seeds = ",".join(f"localhost:{n.port}" for n in tls_cluster)
    with kvkit.Client(f"rediss+cluster://{seeds}?ssl_ca_certs={tls_files.ca_cert}") as client:
        client.cache.set_many({f"k{i}": i for i in range(40)})
        assert len(client.cache.get_many([f"k{i}" for i in range(40)])) == 40
        assert client.cache.clear() == 40
    wrong = f"rediss+cluster://{seeds}?ssl_ca_certs={tls_files.other_ca_cert}&retries=0"
    with kvkit.Client(wrong) as client:
        with pytest.raises(kvkit.BackendUnavailable, match="(?i)certificate"):
            client.cache.get("k")
    with kvkit.Client(f"rediss+cluster://{seeds}?ssl_cert_reqs=none") as client:
        client.cache.set("k", 1)
        assert client.cache.get("k") == 1
        client.cache.delete("k")
    # Without ssl_ca_certs the system trust store is used: our throwaway CA is not in it.
    with kvkit.Client(f"rediss+cluster://{seeds}?retries=0") as client:
        with pytest.raises(kvkit.BackendUnavailable, match="(?i)certificate"):
            client.cache.get("k")
