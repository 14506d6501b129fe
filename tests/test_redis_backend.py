"""The Redis backend against real servers: transports, errors, pools, fail-open, loops."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

import kvkit
from tests.servers import free_port

pytestmark = pytest.mark.redis


def test_unreachable_server_raises_backend_unavailable_quickly():
    """A refused connection becomes BackendUnavailable after bounded retries."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    with kvkit.Client(settings=kvkit.Settings(url=url, connect_timeout=1, retries=2)) as client:
        start = time.monotonic()
        with pytest.raises(kvkit.BackendUnavailable) as info:
            client.cache.get("k")
        assert time.monotonic() - start < 3
        assert info.value.__cause__ is not None
        assert isinstance(info.value, ConnectionError)


async def test_unreachable_server_async():
    """The async client raises the same typed error."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with kvkit.AsyncClient(settings=kvkit.Settings(url=url, retries=1)) as client:
        with pytest.raises(kvkit.BackendUnavailable):
            await client.cache.set("k", 1)
        health = await client.health()
        assert health.status == "fail"
        assert all(not c.ok and c.error for c in health.checks)


def test_wrong_password_is_authentication_error_not_retried(redis_server_factory, monkeypatch):
    """A wrong password raises AuthenticationError at once, without retries."""
    server = redis_server_factory(password="right-secret")
    url = f"redis://:wrong-secret@127.0.0.1:{server.port}/0"
    sleeps = []
    from kvkit._sync.backends import redis as sync_redis

    monkeypatch.setattr(sync_redis, "sleep", lambda s: sleeps.append(s))
    with kvkit.Client(url) as client:
        with pytest.raises(kvkit.AuthenticationError) as info:
            client.cache.get("k")
        assert "wrong-secret" not in str(info.value)
        assert sleeps == []
    with kvkit.Client(f"redis://:right-secret@127.0.0.1:{server.port}/0") as client:
        client.cache.set("k", 1)
        assert client.cache.get("k") == 1


def test_acl_user(redis_server_factory):
    """redis://user:pass@ works with an ACL user; a wrong password fails typed."""
    server = redis_server_factory(acl_users=["user app on >app-secret ~* +@all"])
    with kvkit.Client(f"redis://app:app-secret@127.0.0.1:{server.port}/0") as client:
        client.cache.set("k", "v")
        assert client.cache.get("k") == "v"
    with kvkit.Client(f"redis://app:nope@127.0.0.1:{server.port}/0") as client:
        with pytest.raises(kvkit.AuthenticationError):
            client.cache.get("k")


def test_unix_socket(redis_server_factory):
    """unix:// reaches the server over its socket, with a db option."""
    server = redis_server_factory(unixsocket=True)
    with kvkit.Client(f"unix://{server.unix_path}?db=2") as client:
        client.cache.set("k", 1)
        assert client.cache.get("k") == 1
        assert client.redis().connection_pool.connection_kwargs["db"] == 2


def test_tls_verified_by_default(redis_server_factory, tls_files):
    """rediss:// verifies the certificate; a wrong CA fails; none must be explicit."""
    server = redis_server_factory(tls=tls_files)
    base = f"rediss://localhost:{server.port}/0"
    with kvkit.Client(f"{base}?ssl_ca_certs={tls_files.ca_cert}") as client:
        client.cache.set("k", 1)
        assert client.cache.get("k") == 1
    with kvkit.Client(f"{base}?ssl_ca_certs={tls_files.other_ca_cert}&retries=0") as client:
        with pytest.raises(kvkit.BackendUnavailable, match="(?i)certificate"):
            client.cache.get("k")
    with kvkit.Client(f"{base}?ssl_cert_reqs=none") as client:
        assert client.cache.get("k") == 1


def test_roles_on_the_same_server_share_one_pool(redis_url):
    """Roles with one URL share a backend; a different db gets its own."""
    with kvkit.Client(redis_url + "/0") as client:
        assert client.backend("cache") is client.backend("sessions") is client.backend("queues")
    with kvkit.Client(
        cache=redis_url + "/0", sessions=redis_url + "/1", queues=redis_url + "/0"
    ) as client:
        assert client.backend("cache") is client.backend("queues")
        assert client.backend("cache") is not client.backend("sessions")


def test_three_database_layout(redis_url, redis_server):
    """Each role may have its own db (the original 0/1/2 layout)."""
    urls = {"cache": redis_url + "/0", "sessions": redis_url + "/1", "queues": redis_url + "/2"}
    with kvkit.Client(**urls) as client:
        client.cache.set("layout", 1)
        assert client.redis("cache").connection_pool.connection_kwargs["db"] == 0
        assert client.redis("sessions").connection_pool.connection_kwargs["db"] == 1
    with redis_server.client(db=1) as raw:
        assert raw.exists("kvkit:cache:layout") == 0


def test_redis_method_is_no_io_and_memory_refuses():
    """client.redis() returns the redis-py client; on memory:// it is a ConfigError."""
    with kvkit.Client("redis://127.0.0.1:1/0") as client:
        assert client.redis().__class__.__name__ == "Redis"
    with kvkit.Client("memory://") as client, pytest.raises(kvkit.ConfigError):
        client.redis()
    with kvkit.Client("memory://") as client, pytest.raises(kvkit.ConfigError):
        client.redis("nope")


def test_pool_exhaustion_is_backend_timeout(redis_url):
    """With every connection busy, a caller waits socket_timeout, then BackendTimeout."""
    settings = kvkit.Settings(url=redis_url, max_connections=1, socket_timeout=0.5)
    with kvkit.Client(settings=settings) as client:
        pool = client.redis().connection_pool
        held = pool.get_connection()
        try:
            start = time.monotonic()
            with pytest.raises(kvkit.BackendTimeout):
                client.cache.get("k")
            assert 0.4 < time.monotonic() - start < 2
        finally:
            pool.release(held)
        assert client.cache.get("k") is None


def test_many_threads_share_a_bounded_pool(redis_url):
    """32 threads on a pool of 4 all succeed; the pool never grows beyond 4."""
    settings = kvkit.Settings(url=redis_url, max_connections=4)
    errors = []
    with kvkit.Client(settings=settings) as client:

        def work(n):
            try:
                for i in range(50):
                    client.cache.set(f"t{n}:{i}", i)
                    assert client.cache.get(f"t{n}:{i}") == i
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(client.redis().connection_pool._connections) <= 4


def test_fail_open_cache(caplog):
    """cache_fail_open: reads miss, writes drop, errors are counted and logged redacted."""
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    settings = kvkit.Settings(url=url, cache_fail_open=True, retries=0)
    with kvkit.Client(settings=settings) as client, caplog.at_level(logging.WARNING, "kvkit"):
        cache = client.cache
        assert cache.get("k", "dflt") == "dflt"
        cache.set("k", 1)
        assert cache.add("k", 1) is False
        assert cache.get_many(["a"]) == {}
        assert cache.delete("k") is False
        assert cache.get_or_set("k", lambda: 5) == 5
        assert cache.stats.errors >= 6
        assert "hunter2" not in caplog.text
        assert "redis://:***@" in caplog.text


def test_fail_open_does_not_apply_to_bad_input():
    """fail-open never hides InvalidArgument or SerializationError."""
    settings = kvkit.Settings(
        url=f"redis://127.0.0.1:{free_port()}/0", cache_fail_open=True, retries=0
    )
    with kvkit.Client(settings=settings) as client:
        with pytest.raises(kvkit.InvalidArgument):
            client.cache.set("", 1)
        with pytest.raises(kvkit.SerializationError):
            client.cache.set("k", object())


def test_transient_error_is_retried(redis_url, monkeypatch):
    """An idempotent read survives a dropped connection (CLIENT KILL)."""
    with kvkit.Client(redis_url) as client:
        client.cache.set("k", "v")
        raw = client.redis()
        raw.client_kill_filter(_id=raw.client_id())
        assert client.cache.get("k") == "v"


def test_async_client_survives_event_loop_changes(redis_url):
    """One AsyncClient used from successive event loops reconnects on each."""
    client = kvkit.AsyncClient(redis_url)

    async def use(i):
        await client.cache.set("loop", i)
        return await client.cache.get("loop")

    assert asyncio.run(use(1)) == 1
    assert asyncio.run(use(2)) == 2

    async def close():
        await client.aclose()

    asyncio.run(close())


def test_forked_child_uses_its_own_connections(redis_url):
    """A client created before fork works in the child (gunicorn-style)."""
    import os

    client = kvkit.Client(redis_url)
    client.cache.set("fork", "parent")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            ok = client.cache.get("fork") == "parent"
            client.cache.set("fork-child", "child")
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert client.cache.get("fork-child") == "child"
    client.close()
