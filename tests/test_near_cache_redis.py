"""The near cache against real servers: hits, coherence, own writes, TTLs, channel loss.

Every reader here has ``near_cache`` on; writers are separate clients without it (another
process, as far as Redis can tell: another connection). Waits are bounded polls, never
timing asserts: the coherence *delay* is measured in ``benchmarks/coherence.py``.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

import kvkit
from tests.servers import wait_until

pytestmark = [pytest.mark.redis]


def _settings(url: str, prefix: str, near: int = 1000) -> kvkit.Settings:
    return kvkit.Settings(url=url, prefix=prefix, near_cache=near)


def _prefix() -> str:
    return "n" + uuid.uuid4().hex[:10]


def _live(client) -> bool:
    backend = client.backend()
    return bool(backend._channels) and all(
        c.session() is not None for c in backend._channels.values()
    )


def _warm(client, key: str) -> None:
    """Read ``key`` until it is served from the near cache (the channel starts lazily)."""
    cache = client.cache
    before = cache.stats.near_hits

    def served() -> bool:
        cache.get(key)
        return cache.stats.near_hits > before

    wait_until(served, timeout=5, what=f"{key} to become a near-cache hit")


async def _awarm(client, key: str) -> None:
    cache = client.cache
    before = cache.stats.near_hits
    deadline = time.monotonic() + 5
    while cache.stats.near_hits == before:
        assert time.monotonic() < deadline, f"{key} never became a near-cache hit"
        await cache.get(key)
        await asyncio.sleep(0.01)


def test_a_hot_key_is_served_in_process(redis_url):
    """After one tracked read, gets are near hits (counted apart in stats)."""
    with kvkit.Client(settings=_settings(redis_url, _prefix())) as client:
        client.cache.set("k", {"v": 1})
        _warm(client, "k")
        hits = client.cache.stats.near_hits
        assert [client.cache.get("k") for _ in range(100)] == [{"v": 1}] * 100
        assert client.cache.stats.near_hits == hits + 100
        assert client.cache.stats.to_dict()["near_hits"] == hits + 100
        client.cache.clear()


async def test_a_hot_key_is_served_in_process_async(redis_url):
    """The same on the async client."""
    async with kvkit.AsyncClient(settings=_settings(redis_url, _prefix())) as client:
        await client.cache.set("k", [1, 2])
        await _awarm(client, "k")
        hits = client.cache.stats.near_hits
        for _ in range(100):
            assert await client.cache.get("k") == [1, 2]
        assert client.cache.stats.near_hits == hits + 100
        await client.cache.clear()


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_another_clients_write_invalidates(redis_url, flavour):
    """A write by another client replaces the near-cached value within a bounded wait."""
    prefix = _prefix()
    with kvkit.Client(settings=kvkit.Settings(url=redis_url, prefix=prefix)) as writer:
        writer.cache.set("k", "old")
        if flavour == "sync":
            with kvkit.Client(settings=_settings(redis_url, prefix)) as reader:
                _warm(reader, "k")
                writer.cache.set("k", "new")
                wait_until(lambda: reader.cache.get("k") == "new", timeout=5, what="the new value")
                writer.cache.delete("k")
                wait_until(lambda: reader.cache.get("k") is None, timeout=5, what="the deletion")
        else:

            async def scenario() -> None:
                async with kvkit.AsyncClient(settings=_settings(redis_url, prefix)) as reader:
                    await _awarm(reader, "k")
                    writer.cache.set("k", "new")
                    deadline = time.monotonic() + 5
                    while await reader.cache.get("k") != "new":
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.001)

            asyncio.run(scenario())
        writer.cache.clear()


WRITES = {
    "set": (lambda c: c.set("k", "mine"), "mine"),
    "add": (lambda c: (c.delete("k"), c.add("k", "added")), "added"),
    "delete": (lambda c: c.delete("k"), None),
    "incr": (lambda c: (c.set("k", 1), c.incr("k", 5)), 6),
    "set_many": (lambda c: c.set_many({"k": "many", "other": 1}), "many"),
    "delete_many": (lambda c: c.delete_many(["k", "other"]), None),
    "clear": (lambda c: c.clear(), None),
}


@pytest.mark.parametrize("op", sorted(WRITES))
def test_own_writes_are_seen_at_once(redis_url, op):
    """Read-your-writes: the writing client's next read never returns the cached value."""
    write, expected = WRITES[op]
    with kvkit.Client(settings=_settings(redis_url, _prefix())) as client:
        client.cache.set("k", "cached")
        _warm(client, "k")
        write(client.cache)
        assert client.cache.get("k") == expected
        assert client.cache.get_many(["k"]) == ({} if expected is None else {"k": expected})
        client.cache.clear()


async def test_own_writes_are_seen_at_once_async(redis_url):
    """The same on the async client, for set, touch and delete."""
    async with kvkit.AsyncClient(settings=_settings(redis_url, _prefix())) as client:
        cache = client.cache
        await cache.set("k", "cached")
        await _awarm(client, "k")
        await cache.set("k", "mine")
        assert await cache.get("k") == "mine"
        await _awarm(client, "k")
        assert await cache.touch("k", 0.2)
        assert await cache.get("k") == "mine"
        await asyncio.sleep(0.3)  # the new, shorter TTL applies to the near copy too
        assert await cache.get("k") is None
        await cache.clear()


def test_ttls_are_honoured(redis_url):
    """A near-cached entry is not served past its key's expiry."""
    with kvkit.Client(settings=_settings(redis_url, _prefix())) as client:
        client.cache.set("k", "short", ttl=0.3)
        _warm(client, "k")
        time.sleep(0.35)
        assert client.cache.get("k") is None
        client.cache.clear()


def test_get_many_mixes_near_hits_and_one_round_trip(redis_url):
    """get_many serves what it has in process and fetches the rest together."""
    with kvkit.Client(settings=_settings(redis_url, _prefix())) as client:
        cache = client.cache
        cache.set_many({f"k{i}": i for i in range(10)})
        _warm(client, "k0")
        cache.get_many([f"k{i}" for i in range(5)])
        before = cache.stats.near_hits
        assert cache.get_many([f"k{i}" for i in range(12)]) == {f"k{i}": i for i in range(10)}
        assert cache.stats.near_hits - before == 5
        cache.clear()


def _kill_channel(redis_server, client) -> None:
    for channel in client.backend()._channels.values():
        session = channel.session()
        assert session is not None
        with redis_server.client() as admin:
            assert admin.client_kill_filter(_id=session[1]) == 1


def _new_session(reader, old) -> None:
    wait_until(
        lambda: reader.backend().channel().session() not in (None, old),
        timeout=5,
        what="a new invalidation channel",
    )


@pytest.mark.slow
def test_losing_the_invalidation_connection_flushes(redis_server):
    """CLIENT KILL of the channel, then writes: no value cached before survives the loss.

    Writes made while the channel is dead send their invalidations to nobody, so without
    the flush the reader would serve the old values forever (hits never ask Redis).
    """
    prefix = _prefix()
    keys = [f"k{i}" for i in range(50)]
    with (
        kvkit.Client(settings=kvkit.Settings(url=redis_server.url, prefix=prefix)) as writer,
        kvkit.Client(settings=_settings(redis_server.url, prefix)) as reader,
    ):
        writer.cache.set_many(dict.fromkeys(keys, 0))
        _warm(reader, keys[0])
        reader.cache.get_many(keys)
        before = reader.cache.stats.near_hits
        assert reader.cache.get_many(keys) == dict.fromkeys(keys, 0)
        assert reader.cache.stats.near_hits - before == len(keys)  # all cached
        near = reader.backend().near
        flushes = near.flushes

        # 1. Kill, then write at once: those invalidations are lost.
        old = reader.backend().channel().session()
        _kill_channel(redis_server, reader)
        writer.cache.set_many(dict.fromkeys(keys, 1))
        _new_session(reader, old)
        assert near.flushes > flushes
        assert reader.cache.get_many(keys) == dict.fromkeys(keys, 1)

        # 2. Kill while a writer keeps changing the keys and the reader keeps reading.
        reader.cache.get_many(keys)
        old = reader.backend().channel().session()
        stop = threading.Event()

        def write() -> None:
            n = 1
            while not stop.is_set():
                n += 1
                writer.cache.set_many(dict.fromkeys(keys, n))

        thread = threading.Thread(target=write)
        thread.start()
        try:
            end = time.monotonic() + 0.1
            while time.monotonic() < end:
                reader.cache.get_many(keys)
            _kill_channel(redis_server, reader)
            end = time.monotonic() + 0.1
            while time.monotonic() < end:
                reader.cache.get_many(keys)
        finally:
            stop.set()
            thread.join()
        final = writer.cache.get_many(keys)
        _new_session(reader, old)
        assert reader.cache.get_many(keys) == final
        assert [reader.cache.get(k) for k in keys] == [final[k] for k in keys]
        writer.cache.clear()


@pytest.mark.slow
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_reader_never_sees_an_older_value_after_a_newer_one(redis_url, flavour):
    """A writer counts up; a near-cached reader's values never go down, and end at the last."""
    prefix = _prefix()
    with kvkit.Client(settings=kvkit.Settings(url=redis_url, prefix=prefix)) as writer:
        writer.cache.set("n", 0)
        done = threading.Event()

        def write() -> None:
            for n in range(1, 1001):
                writer.cache.set("n", n)
            done.set()

        seen: list[int] = []
        if flavour == "sync":
            with kvkit.Client(settings=_settings(redis_url, prefix)) as reader:
                _warm(reader, "n")
                thread = threading.Thread(target=write)
                thread.start()
                while not done.is_set():
                    seen.append(reader.cache.get("n"))
                    # Near hits never release the GIL: let the writer thread run.
                    time.sleep(0.0001)
                thread.join()
                wait_until(lambda: reader.cache.get("n") == 1000, timeout=5, what="the last value")
                assert reader.cache.stats.near_hits > 0
        else:

            async def scenario() -> None:
                async with kvkit.AsyncClient(settings=_settings(redis_url, prefix)) as reader:
                    await _awarm(reader, "n")
                    thread = threading.Thread(target=write)
                    thread.start()
                    while not done.is_set():
                        seen.append(await reader.cache.get("n"))
                        await asyncio.sleep(0)
                    thread.join()
                    deadline = time.monotonic() + 5
                    while await reader.cache.get("n") != 1000:
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.001)

            asyncio.run(scenario())
        assert seen == sorted(seen)
        writer.cache.clear()


@pytest.mark.cluster
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_near_cache_on_cluster(redis_cluster, flavour):
    """Per-node channels: hits on every node, and another client's writes invalidate."""
    prefix = _prefix()
    keys = [f"k{i}" for i in range(30)]  # spread over the three masters
    with kvkit.Client(settings=kvkit.Settings(url=redis_cluster.url, prefix=prefix)) as writer:
        writer.cache.set_many(dict.fromkeys(keys, "old"))
        if flavour == "sync":
            with kvkit.Client(settings=_settings(redis_cluster.url, prefix)) as reader:

                def all_near() -> bool:
                    before = reader.cache.stats.near_hits
                    reader.cache.get_many(keys)
                    return reader.cache.stats.near_hits - before == len(keys)

                wait_until(all_near, timeout=5, what="every key as a near hit")
                assert len(reader.backend()._channels) == 3
                writer.cache.set_many(dict.fromkeys(keys, "new"))
                wait_until(
                    lambda: reader.cache.get_many(keys) == dict.fromkeys(keys, "new"),
                    timeout=5,
                    what="the new values",
                )
        else:

            async def scenario() -> None:
                async with kvkit.AsyncClient(
                    settings=_settings(redis_cluster.url, prefix)
                ) as reader:
                    deadline = time.monotonic() + 5
                    while True:
                        before = reader.cache.stats.near_hits
                        await reader.cache.get_many(keys)
                        if reader.cache.stats.near_hits - before == len(keys):
                            break
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.01)
                    writer.cache.set_many(dict.fromkeys(keys, "new"))
                    while await reader.cache.get_many(keys) != dict.fromkeys(keys, "new"):
                        assert time.monotonic() < deadline + 5
                        await asyncio.sleep(0.001)

            asyncio.run(scenario())
        writer.cache.clear()


def test_sentinel_refuses_a_near_cache():
    """Settings.near_cache on redis+sentinel:// is a ConfigError (no I/O needed)."""
    url = "redis+sentinel://127.0.0.1:1/mymaster"
    with pytest.raises(kvkit.ConfigError, match="near_cache"):
        kvkit.Client(settings=kvkit.Settings(url=url, near_cache=10))
    with pytest.raises(kvkit.ConfigError, match="near_cache"):
        kvkit.Client(f"{url}?near_cache=10")


def test_near_cache_setting_is_read_from_the_environment():
    """KVKIT_NEAR_CACHE=N sets Settings.near_cache; a bad value names the variable."""
    settings = kvkit.Settings.from_env(environ={"KVKIT_URL": "redis://h", "KVKIT_NEAR_CACHE": "64"})
    assert settings.near_cache == 64
    with pytest.raises(kvkit.ConfigError, match="KVKIT_NEAR_CACHE"):
        kvkit.Settings.from_env(environ={"KVKIT_NEAR_CACHE": "-1"})
    with pytest.raises(kvkit.ConfigError, match="near_cache"):
        kvkit.Client("redis://127.0.0.1:1?near_cache=lots")


def test_memory_backend_ignores_the_near_cache_setting():
    """memory:// is in-process already: near_cache changes nothing there."""
    with kvkit.Client(settings=kvkit.Settings(near_cache=10)) as client:
        client.cache.set("k", 1)
        assert client.cache.get("k") == 1
        assert client.cache.stats.near_hits == 0


@pytest.mark.slow
def test_an_idle_channel_stays_quiet(redis_server):
    """An idle invalidation channel PINGs about once a second, not in a loop."""
    with kvkit.Client(settings=_settings(redis_server.url, _prefix())) as client:
        client.cache.set("k", 1)
        _warm(client, "k")
        with redis_server.client() as admin:
            before = admin.info("commandstats").get("cmdstat_ping", {}).get("calls", 0)
            time.sleep(1.5)
            after = admin.info("commandstats").get("cmdstat_ping", {}).get("calls", 0)
        assert after - before <= 3
        assert client.cache.get("k") == 1
        client.cache.clear()
