"""`kvkit migrate-sessions`: the original system's sessions survive the cutover (issue 11 #25)."""

from __future__ import annotations

import json

import pytest

import kvkit
from tests.test_cli import run_cli

pytestmark = pytest.mark.redis

OLD_ID = "b3c1f0a2-6f0e-4a51-9d7e-2f64b8d1a9aa"


def _seed(raw) -> None:
    """Write sessions the way the original RedisService did: SETEX session:<id> <json>."""
    raw.set(f"session:{OLD_ID}", json.dumps({"user_id": 1, "cart": ["book"]}), ex=3600)
    raw.set("session:second", json.dumps({"user_id": 2}), ex=120)
    raw.set("session:forever", json.dumps({"user_id": 3}))  # no TTL
    raw.set("session:garbage", b"\xff\xfe not json", ex=3600)
    raw.set("session:a-list", "[1, 2]", ex=3600)
    raw.set("cache:user:1", json.dumps({"name": "Ada"}))  # not a session


def test_migrate_sessions_imports_old_json_sessions(redis_server_factory):
    """Old sessions become legacy sessions with their remaining TTL; ids are never shown."""
    old = redis_server_factory(password="old-pw")
    new = redis_server_factory()
    with old.client(db=1) as raw:
        _seed(raw)
    env = {"OLD_SESSION_URL": old.url + "/1", "KVKIT_URL": new.url}
    result = run_cli("migrate-sessions", "--from-env", "OLD_SESSION_URL", env=env)
    assert result.returncode == 0, result.stderr
    assert "migrated 3 session(s)" in result.stdout
    assert "skipped 2 undecodable" in result.stdout
    output = result.stdout + result.stderr
    for secret in (OLD_ID, "second", "forever", "old-pw"):
        assert secret not in output
    with kvkit.Client(new.url) as client:
        assert client.session_get(OLD_ID) == {"user_id": 1, "cart": ["book"]}
        assert client.session_get("second") == {"user_id": 2}
        assert client.session_get("forever") == {"user_id": 3}
        assert client.session_get("garbage") is None
    with new.client() as raw:
        ttls = sorted(raw.pttl(key) for key in raw.scan_iter())
        assert len(ttls) == 3
        # Remaining lifetimes carried over; no TTL -> the default session TTL (86400 s).
        assert 100_000 < ttls[0] <= 120_000
        assert 3_500_000 < ttls[1] <= 3_600_000
        assert 86_300_000 < ttls[2] <= 86_400_000
    with old.client(db=1) as raw:
        assert raw.exists(f"session:{OLD_ID}")  # the source is only read


def test_migrate_sessions_dry_run_writes_nothing(redis_server_factory):
    """--dry-run counts and writes nothing."""
    old = redis_server_factory()
    new = redis_server_factory()
    with old.client(db=1) as raw:
        _seed(raw)
    result = run_cli("migrate-sessions", "--from", old.url + "/1", "--url", new.url, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would migrate 3 session(s)" in result.stdout
    with new.client() as raw:
        assert list(raw.scan_iter()) == []


@pytest.mark.parametrize(
    "args",
    [
        ["migrate-sessions", "--url", "memory://"],
        ["migrate-sessions", "--from", "", "--url", "memory://"],
        ["migrate-sessions", "--from-env", "NOT_SET_ANYWHERE", "--url", "memory://"],
        ["migrate-sessions", "--from", "memory://", "--url", "memory://", "--pattern", "*"],
        ["migrate-sessions", "--from", "memory://", "--url", "memory://", "--pattern", "s:[x]*"],
        ["migrate-sessions", "--from", "memory://"],
    ],
)
def test_migrate_sessions_usage_errors(args):
    """Missing source, empty or glob patterns, no target: usage errors (exit 2)."""
    result = run_cli(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


async def test_raw_redis_client_for_ported_code(redis_url):
    """`client.redis(role)` is the raw redis-py client that original `.setex`/`.xadd` code needs."""
    async with kvkit.AsyncClient(redis_url) as client:
        assert not hasattr(client.cache, "setex")  # a kvkit cache, not redis-py (documented)
        raw = client.redis("cache")
        key = f"kvkit-test-raw-{id(client)}"
        try:
            await raw.set(key, json.dumps({"name": "Ada"}), ex=60)
            assert json.loads(await raw.get(key)) == {"name": "Ada"}
            assert await client.redis("queues").xadd(key + ":s", {"f": "v"})
        finally:
            await raw.delete(key, key + ":s")
