"""Health checks behind the web endpoints (``health.py`` of each client) on every backend."""

from __future__ import annotations

import json
import socket
import time

import pytest

import kvkit
from kvkit._async.health import (
    PROBE_TIMEOUT,
    full_health,
    health_client,
    redis_health,
    services_health,
)
from tests.servers import free_port

CHECK_KEYS = {"name", "roles", "backend", "url", "ok", "latency_ms", "server_version", "error"}


def assert_body(body, status):
    """The body has the documented shape and is JSON-serializable."""
    json.dumps(body)
    assert set(body) == {"status", "duration_ms", "checks"}
    assert body["status"] == status
    assert body["duration_ms"] >= 0
    for check in body["checks"]:
        assert set(check) == CHECK_KEYS
        assert (check["error"] is None) == check["ok"]


async def test_redis_health_passes(client, backend):
    """One server check covering every role, with latency and version."""
    code, body = await redis_health(client)
    assert code == 200
    assert_body(body, "pass")
    [check] = body["checks"]
    assert check["name"] == "server"
    assert check["roles"] == ["cache", "sessions", "queues"]
    assert check["backend"] == client.backend("cache").kind
    assert check["url"] == client.backend("cache").url.redacted
    assert check["latency_ms"] >= 0
    assert check["server_version"]


async def test_services_health_passes(client):
    """Cache, sessions and queues each complete a round trip."""
    code, body = await services_health(client)
    assert code == 200
    assert_body(body, "pass")
    assert [c["name"] for c in body["checks"]] == ["cache", "sessions", "queues"]
    assert [c["roles"] for c in body["checks"]] == [["cache"], ["sessions"], ["queues"]]
    assert all(c["latency_ms"] >= 0 for c in body["checks"])


async def test_services_health_leaves_no_trace(client):
    """Probes are cleaned up and do not count in the client's cache stats."""
    for _ in range(3):
        code, _body = await services_health(client)
        assert code == 200
    assert client.cache.stats.sets == 0
    assert await client.cache.namespace("__health__").clear() == 0
    stats = await client.queue("__health__").stats()
    assert (stats.ready, stats.pending, stats.dead) == (0, 0, 0)


async def test_full_health_has_every_check(client):
    """full_health = the server checks plus the service checks."""
    code, body = await full_health(client)
    assert code == 200
    assert_body(body, "pass")
    assert [c["name"] for c in body["checks"]] == ["server", "cache", "sessions", "queues"]


async def test_roles_on_different_servers_get_one_check_each():
    """Roles on distinct backends are checked separately."""
    async with kvkit.AsyncClient(
        cache="memory://", sessions="fakeredis://", queues="memory://kvkit-test-health"
    ) as client:
        code, body = await redis_health(client)
    assert code == 200
    roles = [c["roles"] for c in body["checks"]]
    assert sorted(map(tuple, roles)) == [("cache",), ("queues",), ("sessions",)]


async def test_dead_server_fails_fast_without_secrets():
    """A server that is not there: 503 quickly, error shown, password never shown."""
    url = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"
    async with kvkit.AsyncClient(url) as client:
        probe = health_client(client)
        try:
            for check in (redis_health, services_health, full_health):
                start = time.monotonic()
                code, body = await check(probe)
                assert time.monotonic() - start < 2.0
                assert code == 503
                assert_body(body, "fail")
                assert all(not c["ok"] for c in body["checks"])
                assert all(c["error"] for c in body["checks"])
                text = json.dumps(body)
                assert "s3cret-pw" not in text
                assert "***" in text
        finally:
            await probe.aclose()


async def test_unresponsive_server_is_cut_at_the_time_limit():
    """A server that accepts but never answers fails with TimeoutError at the limit."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        url = f"redis://127.0.0.1:{port}/0?socket_timeout=0.6&connect_timeout=0.6&retries=0"
        async with kvkit.AsyncClient(url) as client:
            start = time.monotonic()
            code, body = await redis_health(client, timeout=0.2)
            elapsed = time.monotonic() - start
    assert code == 503
    assert elapsed < 0.55
    assert body["checks"][0]["error"].startswith("TimeoutError")


async def test_health_client_for_in_process_backends_is_the_client():
    """memory:// and fakeredis:// clients are checked directly."""
    async with kvkit.AsyncClient("memory://") as client:
        assert health_client(client) is client


async def test_health_client_for_redis_has_short_timeouts():
    """A Redis client gets a probe client with short timeouts and no retries."""
    settings = kvkit.Settings(url="redis://:pw@127.0.0.1:1/0", prefix="app")
    async with kvkit.AsyncClient(settings=settings) as client:
        probe = health_client(client)
        try:
            assert probe is not client
            assert probe.settings.socket_timeout == PROBE_TIMEOUT
            assert probe.settings.connect_timeout == PROBE_TIMEOUT
            assert probe.settings.retries == 0
            assert probe.settings.url == settings.url
            assert probe.settings.prefix == "app"
        finally:
            await probe.aclose()


@pytest.mark.redis
async def test_stopped_server_fails_then_recovers(fresh_redis_server):
    """Health follows the server: pass, fail within 2 s when stopped, pass after restart."""
    async with kvkit.AsyncClient(fresh_redis_server.url) as client:
        probe = health_client(client)
        try:
            assert (await full_health(probe))[0] == 200
            fresh_redis_server.stop()
            start = time.monotonic()
            code, body = await full_health(probe)
            assert time.monotonic() - start < 2.0
            assert code == 503
            assert_body(body, "fail")
            fresh_redis_server.restart()
            assert (await full_health(probe))[0] == 200
        finally:
            await probe.aclose()


async def test_probes_leave_no_key_without_ttl(client, backend):
    """Every key the health probes write expires within a minute (no probe litters production)."""
    if backend == "memory":
        pytest.skip("an in-process store has no key space to leave keys in")
    for _ in range(2):
        code, _body = await full_health(client)
        assert code == 200
    redis = client.redis("queues")
    keys = [key async for key in redis.scan_iter(match=client.settings.prefix + ":*")]
    assert keys  # the probe queue's, expiring
    for key in keys:
        assert 0 < await redis.pttl(key) <= 60_000, key
